//! Model-name normalization: the many spellings of one model in real spans
//! (`openai/gpt-4o-2024-08-06`, `azure/gpt-4o`, `us.anthropic.claude-3-5-sonnet-20241022-v2:0`,
//! `claude-3.5-sonnet`) reduce to one key that the catalog is indexed by.
//! Each step taken is recorded, so `costplane prices check` can say why a
//! name matched.
//!
//! A date suffix is not always noise: a dated snapshot can have its own list
//! price (`gpt-4o-2024-05-13` is $5/$15 while `gpt-4o` is $2.50/$10), so
//! [`normalize_keeping_date`] gives the key the catalog tries first.
//!
//! Providers are spelled differently by each convention (`az.ai.openai`,
//! `azure.ai.openai`; `mistral`, `mistral_ai`); [`canonical_provider`] maps
//! them to one id so a catalog entry's provider and a span's provider meet.

/// Bedrock cross-region inference prefixes.
const REGION_PREFIXES: [&str; 8] = ["us.", "eu.", "apac.", "us-gov.", "global.", "jp.", "au.", "ca."];

/// Bedrock model-id vendor prefixes.
const VENDOR_PREFIXES: [&str; 8] = ["anthropic.", "meta.", "mistral.", "amazon.", "cohere.", "ai21.", "deepseek.", "openai."];

/// The result of normalizing a model name.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Normalized {
    pub key: String,
    /// What was removed or changed, in order, for explanations.
    pub steps: Vec<String>,
}

fn strip_suffix_digits(s: &str, sep: char, digits: usize) -> Option<&str> {
    let (head, tail) = s.rsplit_once(sep)?;
    (tail.len() == digits && tail.chars().all(|c| c.is_ascii_digit())).then_some(head)
}

/// Normalizes a model name to its catalog key.
pub fn normalize(raw: &str) -> Normalized {
    normalize_with(raw, true).0
}

/// Normalizes a model name as [`normalize`] does but keeps a date suffix:
/// the key of a dated snapshot entry (`gpt-4o-2024-05-13`).
pub fn normalize_keeping_date(raw: &str) -> Normalized {
    normalize_with(raw, false).0
}

/// [`normalize`] of a name, and [`normalize_keeping_date`] of it when that
/// differs (the name has a date). Names without a date, most of them, are
/// normalized once.
pub fn normalize_both(raw: &str) -> (Normalized, Option<Normalized>) {
    let (undated, dropped_date) = normalize_with(raw, true);
    (undated, dropped_date.then(|| normalize_keeping_date(raw)))
}

/// The name with only its spelling normalized: prefixes dropped, its
/// version and date kept (`amazon.titan-embed-text-v1` → `titan-embed-text-v1`).
/// Tried first, for models whose version is another model with its own
/// price (Titan embeddings v1 and v2), not a revision of the same one.
pub fn normalize_exact(raw: &str) -> Normalized {
    normalize_full(raw, false, true).0
}

fn normalize_with(raw: &str, drop_date: bool) -> (Normalized, bool) {
    normalize_full(raw, drop_date, false)
}

/// The normalized name, and whether a date was dropped.
fn normalize_full(raw: &str, drop_date: bool, keep_version: bool) -> (Normalized, bool) {
    let mut steps = Vec::new();
    let mut s = raw.trim().to_ascii_lowercase();
    if let Some((prefix, rest)) = s.rsplit_once('/') {
        steps.push(format!("dropped provider prefix '{prefix}/'"));
        s = rest.to_owned();
    }
    // `openai:gpt-4o-mini` (pydantic-ai, LangChain's init_chat_model): a
    // word of letters before the colon. Bedrock's `...-v2:0` has digits after
    // it and dots before it, so it is left for the version step below.
    if let Some((prefix, rest)) = s.split_once(':') {
        let word = !prefix.is_empty() && prefix.chars().all(|c| c.is_ascii_lowercase() || c == '_' || c == '-');
        if word && !rest.is_empty() && !rest.chars().all(|c| c.is_ascii_digit()) {
            steps.push(format!("dropped provider prefix '{prefix}:'"));
            s = rest.to_owned();
        }
    }
    for p in REGION_PREFIXES {
        if let Some(rest) = s.strip_prefix(p) {
            steps.push(format!("dropped region prefix '{p}'"));
            s = rest.to_owned();
            break;
        }
    }
    for p in VENDOR_PREFIXES {
        if let Some(rest) = s.strip_prefix(p) {
            steps.push(format!("dropped vendor prefix '{p}'"));
            s = rest.to_owned();
            break;
        }
    }
    // Vertex AI dates after the version (`claude-3-5-sonnet-v2@20241022`):
    // set the date aside, and put it back after the version as the
    // dashless date suffix the other spellings use.
    let vertex_date =
        s.rsplit_once('@').filter(|(_, d)| d.len() == 8 && d.chars().all(|c| c.is_ascii_digit())).map(|(h, d)| (h.len(), d.to_owned()));
    if let Some((head_len, _)) = &vertex_date {
        s.truncate(*head_len);
    }
    // Bedrock versions: "-v2:0", "-v1", ":0".
    if let Some((head, tail)) = s.rsplit_once(':') {
        if tail.chars().all(|c| c.is_ascii_digit()) {
            steps.push(format!("dropped version ':{tail}'"));
            s = head.to_owned();
        }
    }
    if let Some((head, tail)) = s.rsplit_once("-v") {
        if !keep_version && !tail.is_empty() && tail.chars().all(|c| c.is_ascii_digit()) {
            steps.push(format!("dropped version '-v{tail}'"));
            s = head.to_owned();
        }
    }
    if let Some((_, date)) = vertex_date {
        s = format!("{s}-{date}");
    }
    // Date suffixes: -2024-08-06, -20241022, @20241022.
    let mut dropped_date = false;
    if drop_date {
        let dashed = (|| {
            let a = strip_suffix_digits(&s, '-', 2)?;
            let b = strip_suffix_digits(a, '-', 2)?;
            strip_suffix_digits(b, '-', 4)
        })();
        if let Some(head) = dashed.or_else(|| strip_suffix_digits(&s, '-', 8)).or_else(|| strip_suffix_digits(&s, '@', 8)) {
            steps.push(format!("dropped date '{}'", &s[head.len()..]));
            s = head.to_owned();
            dropped_date = true;
        }
    }
    if s.contains('.') {
        steps.push("spelled '.' as '-'".to_owned());
        s = s.replace('.', "-");
    }
    (Normalized { key: s, steps }, dropped_date)
}

/// The one id of a provider however a span or a catalog spells it, compared
/// case-insensitively. Names follow the OTel GenAI `gen_ai.provider.name`
/// values; older `gen_ai.system` spellings and the catalog's short names map
/// onto them. An unknown name is kept, lowercased.
pub fn canonical_provider(raw: &str) -> String {
    let p = raw.trim().to_ascii_lowercase();
    let canonical = match p.as_str() {
        "azure.ai.openai" | "az.ai.openai" | "azure" | "azure_openai" | "azure.openai" => "azure.ai.openai",
        "azure.ai.inference" | "az.ai.inference" => "azure.ai.inference",
        "aws.bedrock" | "bedrock" | "aws_bedrock" | "amazon_bedrock" => "aws.bedrock",
        // The catalog's "google" entries are the Gemini API's prices.
        "gcp.gemini" | "gemini" | "google" | "google_genai" => "gcp.gemini",
        "gcp.vertex_ai" | "vertex_ai" | "vertexai" => "gcp.vertex_ai",
        "mistral_ai" | "mistral" | "mistralai" => "mistral_ai",
        _ => return p,
    };
    canonical.to_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn real_spellings_reduce_to_one_key() {
        for (raw, key) in [
            ("gpt-4o", "gpt-4o"),
            ("openai/gpt-4o-2024-08-06", "gpt-4o"),
            ("azure/gpt-4o-mini", "gpt-4o-mini"),
            ("us.anthropic.claude-3-5-sonnet-20241022-v2:0", "claude-3-5-sonnet"),
            ("anthropic.claude-3-haiku-20240307-v1:0", "claude-3-haiku"),
            ("bedrock/meta.llama3-1-70b-instruct-v1:0", "llama3-1-70b-instruct"),
            ("claude-3.5-sonnet", "claude-3-5-sonnet"),
            ("openrouter/anthropic/claude-sonnet-4", "claude-sonnet-4"),
            ("claude-3-5-sonnet@20240620", "claude-3-5-sonnet"),
            ("claude-3-5-sonnet-v2@20241022", "claude-3-5-sonnet"),
            ("amazon.titan-embed-text-v1", "titan-embed-text"),
            ("models/gemini-2.5-pro", "gemini-2-5-pro"),
            ("GPT-4.1", "gpt-4-1"),
            ("openai:gpt-4o-mini", "gpt-4o-mini"),
            ("anthropic:claude-3-5-sonnet-latest", "claude-3-5-sonnet-latest"),
            ("llama-3.1-8b-instant", "llama-3-1-8b-instant"),
        ] {
            assert_eq!(normalize(raw).key, key, "{raw}");
        }
    }

    #[test]
    fn the_dated_key_keeps_only_the_date() {
        for (raw, key) in [
            ("gpt-4o-2024-05-13", "gpt-4o-2024-05-13"),
            ("openai/GPT-4o-2024-05-13", "gpt-4o-2024-05-13"),
            ("us.anthropic.claude-3-5-sonnet-20241022-v2:0", "claude-3-5-sonnet-20241022"),
            ("claude-3.5-sonnet", "claude-3-5-sonnet"),
            ("claude-3-5-sonnet-v2@20241022", "claude-3-5-sonnet-20241022"),
        ] {
            assert_eq!(normalize_keeping_date(raw).key, key, "{raw}");
        }
        assert_eq!(normalize_exact("amazon.titan-embed-text-v1").key, "titan-embed-text-v1");
        assert_eq!(normalize_exact("amazon.titan-embed-text-v2:0").key, "titan-embed-text-v2");
        assert!(!normalize_keeping_date("gpt-4o-2024-05-13").steps.iter().any(|s| s.contains("date")));
    }

    #[test]
    fn provider_spellings_meet() {
        for (raw, id) in [
            ("OpenAI", "openai"),
            ("az.ai.openai", "azure.ai.openai"),
            ("Azure.AI.OpenAI", "azure.ai.openai"),
            (" aws.bedrock ", "aws.bedrock"),
            ("bedrock", "aws.bedrock"),
            ("mistral", "mistral_ai"),
            ("google", "gcp.gemini"),
            ("vertex_ai", "gcp.vertex_ai"),
            ("Anthropic", "anthropic"),
            ("acme-cloud", "acme-cloud"),
        ] {
            assert_eq!(canonical_provider(raw), id, "{raw}");
        }
    }

    #[test]
    fn steps_explain_the_match() {
        let n = normalize("us.anthropic.claude-3-5-sonnet-20241022-v2:0");
        assert_eq!(
            n.steps,
            vec![
                "dropped region prefix 'us.'",
                "dropped vendor prefix 'anthropic.'",
                "dropped version ':0'",
                "dropped version '-v2'",
                "dropped date '-20241022'",
            ]
        );
    }
}
