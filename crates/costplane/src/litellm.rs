//! `costplane prices import --format litellm FILE`: LiteLLM's public
//! `model_prices_and_context_window.json` (per-token USD prices, facts) into
//! a costplane price override file, so prices can be refreshed without a
//! release.
//!
//! The file's prices are JSON numbers such as `2.5e-06`. They are read from
//! their text (a small JSON reader below keeps each number's digits), never
//! through a float, and scaled to costplane's per-1M-token unit exactly.

use std::collections::HashSet;
use std::fmt::Write as _;
use std::str::FromStr;

use anyhow::{bail, Context};
use costplane_cost::model_name::{canonical_provider, normalize_keeping_date};
use rust_decimal::Decimal;

/// A JSON value whose numbers keep their text.
#[derive(Debug, Clone, PartialEq)]
enum Json {
    Object(Vec<(String, Json)>),
    Array(Vec<Json>),
    Str(String),
    Num(String),
    Other,
}

struct Reader<'a> {
    s: &'a [u8],
    i: usize,
}

impl Reader<'_> {
    fn ws(&mut self) {
        while self.i < self.s.len() && self.s[self.i].is_ascii_whitespace() {
            self.i += 1;
        }
    }

    fn err<T>(&self, what: &str) -> anyhow::Result<T> {
        bail!("not LiteLLM's JSON: {what} at byte {}", self.i)
    }

    fn eat(&mut self, b: u8) -> anyhow::Result<()> {
        self.ws();
        if self.s.get(self.i) == Some(&b) {
            self.i += 1;
            Ok(())
        } else {
            self.err(&format!("expected '{}'", b as char))
        }
    }

    fn value(&mut self, depth: usize) -> anyhow::Result<Json> {
        if depth > 64 {
            return self.err("nesting too deep");
        }
        self.ws();
        match self.s.get(self.i) {
            Some(b'{') => {
                self.i += 1;
                let mut fields = Vec::new();
                self.ws();
                if self.s.get(self.i) == Some(&b'}') {
                    self.i += 1;
                    return Ok(Json::Object(fields));
                }
                loop {
                    self.ws();
                    let Json::Str(key) = self.string()? else { unreachable!() };
                    self.eat(b':')?;
                    fields.push((key, self.value(depth + 1)?));
                    self.ws();
                    match self.s.get(self.i) {
                        Some(b',') => self.i += 1,
                        Some(b'}') => {
                            self.i += 1;
                            return Ok(Json::Object(fields));
                        }
                        _ => return self.err("expected ',' or '}'"),
                    }
                }
            }
            Some(b'[') => {
                self.i += 1;
                let mut items = Vec::new();
                self.ws();
                if self.s.get(self.i) == Some(&b']') {
                    self.i += 1;
                    return Ok(Json::Array(items));
                }
                loop {
                    items.push(self.value(depth + 1)?);
                    self.ws();
                    match self.s.get(self.i) {
                        Some(b',') => self.i += 1,
                        Some(b']') => {
                            self.i += 1;
                            return Ok(Json::Array(items));
                        }
                        _ => return self.err("expected ',' or ']'"),
                    }
                }
            }
            Some(b'"') => self.string(),
            Some(c) if *c == b'-' || c.is_ascii_digit() => {
                let start = self.i;
                while self.i < self.s.len() && matches!(self.s[self.i], b'0'..=b'9' | b'-' | b'+' | b'.' | b'e' | b'E') {
                    self.i += 1;
                }
                Ok(Json::Num(String::from_utf8_lossy(&self.s[start..self.i]).into_owned()))
            }
            _ => {
                for word in [&b"true"[..], b"false", b"null"] {
                    if self.s[self.i..].starts_with(word) {
                        self.i += word.len();
                        return Ok(Json::Other);
                    }
                }
                self.err("unexpected character")
            }
        }
    }

    fn string(&mut self) -> anyhow::Result<Json> {
        if self.s.get(self.i) != Some(&b'"') {
            return self.err("expected a string");
        }
        self.i += 1;
        let mut out = Vec::new();
        while let Some(&c) = self.s.get(self.i) {
            self.i += 1;
            match c {
                b'"' => return Ok(Json::Str(String::from_utf8(out).context("a string is not UTF-8")?)),
                b'\\' => {
                    let e = *self.s.get(self.i).context("unfinished escape")?;
                    self.i += 1;
                    match e {
                        b'n' => out.push(b'\n'),
                        b't' => out.push(b'\t'),
                        b'r' => out.push(b'\r'),
                        b'b' => out.push(8),
                        b'f' => out.push(12),
                        b'u' => {
                            let hex = self.s.get(self.i..self.i + 4).context("unfinished \\u escape")?;
                            self.i += 4;
                            let code = u32::from_str_radix(std::str::from_utf8(hex)?, 16)?;
                            // Surrogates (emoji in descriptions) are not names or prices.
                            let ch = char::from_u32(code).unwrap_or('\u{fffd}');
                            out.extend_from_slice(ch.encode_utf8(&mut [0; 4]).as_bytes());
                        }
                        other => out.push(other),
                    }
                }
                other => out.push(other),
            }
        }
        self.err("unfinished string")
    }
}

fn parse(text: &str) -> anyhow::Result<Json> {
    let mut r = Reader { s: text.as_bytes(), i: 0 };
    let v = r.value(0)?;
    r.ws();
    if r.i != r.s.len() {
        return r.err("trailing data");
    }
    Ok(v)
}

/// A per-token price's text as a per-1M-token decimal string.
fn per_million(text: &str) -> anyhow::Result<String> {
    let d = Decimal::from_str(text).or_else(|_| Decimal::from_scientific(text)).with_context(|| format!("{text} is not a price"))?;
    Ok((d * Decimal::from(1_000_000u32)).normalize().to_string())
}

fn field<'a>(fields: &'a [(String, Json)], key: &str) -> Option<&'a Json> {
    fields.iter().find(|(k, _)| k == key).map(|(_, v)| v)
}

fn num<'a>(fields: &'a [(String, Json)], key: &str) -> Option<&'a str> {
    match field(fields, key) {
        Some(Json::Num(n)) => Some(n),
        _ => None,
    }
}

/// LiteLLM's provider names for costplane's (others are kept).
fn provider(litellm: &str) -> &str {
    match litellm {
        "vertex_ai-language-models" | "vertex_ai" => "gcp.vertex_ai",
        "gemini" => "google",
        "text-completion-openai" => "openai",
        "bedrock" | "bedrock_converse" => "aws.bedrock",
        "mistral" => "mistral",
        other => other,
    }
}

fn toml_str(s: &str) -> String {
    let mut out = String::from("\"");
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            c if c.is_control() => {
                let _ = write!(out, "\\u{:04x}", c as u32);
            }
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

/// The override file for LiteLLM's JSON `text`, prices effective on
/// `effective`; also how many models were taken and skipped.
pub fn to_overrides(text: &str, effective: chrono::NaiveDate, version: &str) -> anyhow::Result<(String, usize, usize)> {
    let Json::Object(models) = parse(text)? else { bail!("not LiteLLM's JSON: the top level is not an object of models") };
    let mut out = format!(
        "# Imported from LiteLLM's model_prices_and_context_window.json by `costplane prices import`.\n\
         # USD per 1M tokens; use with --overrides / COSTPLANE_PRICE_OVERRIDES / [cost] price_overrides.\n\
         version = {}\ncurrency = \"USD\"\n",
        toml_str(version)
    );
    let (mut taken, mut skipped) = (0, 0);
    let mut seen = HashSet::new();
    for (name, spec) in &models {
        let Json::Object(f) = spec else { continue };
        if name == "sample_spec" {
            continue;
        }
        let mode = match field(f, "mode") {
            Some(Json::Str(m)) => m.as_str(),
            _ => "chat",
        };
        let (Some(input), Some(output)) = (num(f, "input_cost_per_token"), num(f, "output_cost_per_token").or(Some("0"))) else {
            skipped += 1;
            continue;
        };
        if !["chat", "completion", "embedding", "responses"].contains(&mode) {
            skipped += 1;
            continue;
        }
        let prov = match field(f, "litellm_provider") {
            Some(Json::Str(p)) => provider(p).to_owned(),
            _ => "unknown".to_owned(),
        };
        // One entry per provider and catalog key: LiteLLM lists some models
        // under several spellings.
        if !seen.insert((canonical_provider(&prov), normalize_keeping_date(name).key)) {
            skipped += 1;
            continue;
        }
        let _ = write!(
            out,
            "\n[[model]]\nprovider = {}\nname = {}\n  [[model.prices]]\n  effective = \"{effective}\"\n  input = \"{}\"\n  output = \"{}\"\n",
            toml_str(&prov),
            toml_str(name),
            per_million(input)?,
            per_million(output)?
        );
        for (key, ours) in [("cache_read_input_token_cost", "cache_read"), ("cache_creation_input_token_cost", "cache_write")] {
            if let Some(v) = num(f, key) {
                let _ = writeln!(out, "  {ours} = \"{}\"", per_million(v)?);
            }
        }
        out.push_str("  source = \"LiteLLM model_prices_and_context_window.json\"\n");
        if let (Some(i), Some(o)) = (num(f, "input_cost_per_token_above_200k_tokens"), num(f, "output_cost_per_token_above_200k_tokens")) {
            let _ = write!(
                out,
                "    [[model.prices.tiers]]\n    above_input_tokens = 200000\n    input = \"{}\"\n    output = \"{}\"\n",
                per_million(i)?,
                per_million(o)?
            );
        }
        taken += 1;
    }
    Ok((out, taken, skipped))
}

#[cfg(test)]
mod tests {
    use super::*;

    // The shape of LiteLLM's file, with its number spellings.
    const FIXTURE: &str = r#"{
      "sample_spec": {"max_tokens": "LEGACY parameter", "input_cost_per_token": 0.0, "mode": "one of: chat, embedding"},
      "gpt-4o": {"max_tokens": 16384, "input_cost_per_token": 2.5e-06, "output_cost_per_token": 1e-05,
                 "cache_read_input_token_cost": 1.25e-06, "litellm_provider": "openai", "mode": "chat",
                 "supports_vision": true, "supported_endpoints": ["/v1/chat/completions"]},
      "azure/gpt-4o": {"input_cost_per_token": 0.0000025, "output_cost_per_token": 0.00001, "litellm_provider": "azure", "mode": "chat"},
      "gemini/gemini-2.5-pro": {"input_cost_per_token": 1.25e-06, "output_cost_per_token": 1e-05,
                 "input_cost_per_token_above_200k_tokens": 2.5e-06, "output_cost_per_token_above_200k_tokens": 1.5e-05,
                 "litellm_provider": "gemini", "mode": "chat", "description": "caf\u00e9 \"quoted\""},
      "text-embedding-3-small": {"input_cost_per_token": 2e-08, "output_cost_per_token": 0.0, "litellm_provider": "openai", "mode": "embedding"},
      "dall-e-3": {"input_cost_per_pixel": 1e-8, "litellm_provider": "openai", "mode": "image_generation"},
      "tts-1": {"input_cost_per_character": 1.5e-05, "litellm_provider": "openai", "mode": "audio_speech"}
    }"#;

    #[test]
    fn litellm_prices_become_exact_per_million_overrides() {
        let day = chrono::NaiveDate::from_ymd_opt(2026, 11, 23).unwrap();
        let (toml, taken, skipped) = to_overrides(FIXTURE, day, "litellm-test").unwrap();
        assert_eq!((taken, skipped), (4, 2), "{toml}");
        // 2.5e-06 per token x 1,000,000 = 2.5 per 1M; 1e-05 -> 10; 1.25e-06 -> 1.25; 2e-08 -> 0.02.
        assert!(toml.contains("name = \"gpt-4o\"\n  [[model.prices]]\n  effective = \"2026-11-23\"\n  input = \"2.5\"\n  output = \"10\"\n  cache_read = \"1.25\""), "{toml}");
        assert!(toml.contains("input = \"0.02\""), "{toml}");
        assert!(toml.contains("above_input_tokens = 200000\n    input = \"2.5\"\n    output = \"15\""), "{toml}");
        // The result is a valid override file that the catalog loads.
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("litellm.toml");
        std::fs::write(&path, &toml).unwrap();
        let catalog = costplane_cost::Catalog::load(Some(&path)).unwrap();
        let gemini = catalog.lookup_for("gcp.gemini", "gemini-2.5-pro").entry.unwrap();
        let rates = gemini.rates(day, 300_000).unwrap();
        assert_eq!((rates.input.to_string(), rates.output.to_string(), rates.tier_above), ("2.5".into(), "15".into(), Some(200_000)));
        let azure = catalog.lookup_for("azure", "gpt-4o").entry.unwrap();
        assert_eq!(azure.provider, "azure");
    }

    #[test]
    fn malformed_files_are_refused() {
        let day = chrono::NaiveDate::from_ymd_opt(2026, 11, 23).unwrap();
        assert!(to_overrides("[1, 2]", day, "x").is_err());
        assert!(to_overrides("{\"a\": {\"input_cost_per_token\": 1e-6", day, "x").is_err());
        assert!(to_overrides("{\"a\": {\"input_cost_per_token\": \"cheap\", \"mode\": \"chat\"}}", day, "x").unwrap().1 == 0);
    }
}
