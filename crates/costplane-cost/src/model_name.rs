//! Model-name normalization: the many spellings of one model in real spans
//! (`openai/gpt-4o-2024-08-06`, `azure/gpt-4o`, `us.anthropic.claude-3-5-sonnet-20241022-v2:0`,
//! `claude-3.5-sonnet`) reduce to one key that the catalog is indexed by.
//! Each step taken is recorded, so `costplane prices check` can say why a
//! name matched.

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
    let mut steps = Vec::new();
    let mut s = raw.trim().to_ascii_lowercase();
    if let Some((prefix, rest)) = s.rsplit_once('/') {
        steps.push(format!("dropped provider prefix '{prefix}/'"));
        s = rest.to_owned();
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
    // Bedrock versions: "-v2:0", "-v1", ":0".
    if let Some((head, tail)) = s.rsplit_once(':') {
        if tail.chars().all(|c| c.is_ascii_digit()) {
            steps.push(format!("dropped version ':{tail}'"));
            s = head.to_owned();
        }
    }
    if let Some((head, tail)) = s.rsplit_once("-v") {
        if !tail.is_empty() && tail.chars().all(|c| c.is_ascii_digit()) {
            steps.push(format!("dropped version '-v{tail}'"));
            s = head.to_owned();
        }
    }
    // Date suffixes: -2024-08-06, -20241022, @20241022.
    let dashed = (|| {
        let a = strip_suffix_digits(&s, '-', 2)?;
        let b = strip_suffix_digits(a, '-', 2)?;
        strip_suffix_digits(b, '-', 4)
    })();
    if let Some(head) = dashed {
        steps.push(format!("dropped date '{}'", &s[head.len()..]));
        s = head.to_owned();
    } else if let Some(head) = strip_suffix_digits(&s, '-', 8).or_else(|| strip_suffix_digits(&s, '@', 8)) {
        steps.push(format!("dropped date '{}'", &s[head.len()..]));
        s = head.to_owned();
    }
    if s.contains('.') {
        steps.push("spelled '.' as '-'".to_owned());
        s = s.replace('.', "-");
    }
    Normalized { key: s, steps }
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
            ("models/gemini-2.5-pro", "gemini-2-5-pro"),
            ("GPT-4.1", "gpt-4-1"),
        ] {
            assert_eq!(normalize(raw).key, key, "{raw}");
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
