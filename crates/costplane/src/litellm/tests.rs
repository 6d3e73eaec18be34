//! The import on fixtures in the shape of LiteLLM's file, loaded back
//! through the catalog as `costplane serve --overrides` loads it.

use super::*;
use costplane_cost::Catalog;

// The shape of LiteLLM's file, with its number spellings. The fine-tune,
// the data zone and the deployment tier are listed before the plain
// entries, as in LiteLLM's file.
const FIXTURE: &str = r#"{
  "sample_spec": {"max_tokens": "LEGACY parameter", "input_cost_per_token": 0.0, "mode": "one of: chat, embedding"},
  "azure/eu/gpt-4o-2024-08-06": {"input_cost_per_token": 2.75e-06, "output_cost_per_token": 1.1e-05, "litellm_provider": "azure", "mode": "chat"},
  "azure/global-standard/gpt-4o-2024-08-06": {"input_cost_per_token": 2.5e-06, "output_cost_per_token": 1e-05, "litellm_provider": "azure", "mode": "chat"},
  "azure/gpt-4o-2024-08-06": {"input_cost_per_token": 0.0000025, "output_cost_per_token": 0.00001, "litellm_provider": "azure", "mode": "chat"},
  "ft:gpt-4o-2024-08-06": {"input_cost_per_token": 3.75e-06, "output_cost_per_token": 1.5e-05, "input_cost_per_token_batches": 1.875e-06,
             "litellm_provider": "openai", "mode": "chat"},
  "gpt-4o-2024-08-06": {"max_tokens": 16384, "input_cost_per_token": 2.5e-06, "output_cost_per_token": 1e-05,
             "cache_read_input_token_cost": 1.25e-06, "input_cost_per_token_batches": 1.25e-06, "litellm_provider": "openai", "mode": "chat",
             "supports_vision": true, "supported_endpoints": ["/v1/chat/completions"]},
  "bedrock/ap-south-1/meta.llama3-70b-instruct-v1:0": {"input_cost_per_token": 3.18e-06, "output_cost_per_token": 4.2e-06, "litellm_provider": "bedrock", "mode": "chat"},
  "bedrock/us-east-1/1-month-commitment/anthropic.claude-instant-v1": {"input_cost_per_second": 0.011, "output_cost_per_second": 0.011, "litellm_provider": "bedrock", "mode": "chat"},
  "meta.llama3-70b-instruct-v1:0": {"input_cost_per_token": 2.65e-06, "output_cost_per_token": 3.5e-06, "litellm_provider": "bedrock", "mode": "chat"},
  "us.anthropic.claude-sonnet-4-5-20250929-v1:0": {"input_cost_per_token": 3.3e-06, "output_cost_per_token": 1.65e-05, "litellm_provider": "bedrock_converse", "mode": "chat"},
  "anthropic.claude-sonnet-4-5-20250929-v1:0": {"input_cost_per_token": 3e-06, "output_cost_per_token": 1.5e-05, "litellm_provider": "bedrock_converse", "mode": "chat"},
  "claude-sonnet-4-5-20250929": {"input_cost_per_token": 3e-06, "output_cost_per_token": 1.5e-05, "cache_read_input_token_cost": 3e-07,
             "cache_creation_input_token_cost": 3.75e-06, "cache_creation_input_token_cost_above_1hr": 6e-06,
             "input_cost_per_token_above_200k_tokens": 6e-06, "output_cost_per_token_above_200k_tokens": 2.25e-05,
             "cache_read_input_token_cost_above_200k_tokens": 6e-07, "cache_creation_input_token_cost_above_200k_tokens": 7.5e-06,
             "litellm_provider": "anthropic", "mode": "chat"},
  "gemini/gemini-1.5-pro": {"input_cost_per_token": 1.25e-06, "output_cost_per_token": 5e-06,
             "input_cost_per_token_above_128k_tokens": 2.5e-06, "output_cost_per_token_above_128k_tokens": 1e-05,
             "litellm_provider": "gemini", "mode": "chat", "description": "caf\u00e9 \"quoted\""},
  "gemini/gemini-2.5-flash-preview-04-17": {"input_cost_per_token": 1.5e-07, "output_cost_per_token": 6e-07, "output_cost_per_reasoning_token": 3.5e-06,
             "litellm_provider": "gemini", "mode": "chat"},
  "deepseek-chat": {"input_cost_per_token": 6e-07, "output_cost_per_token": 1.7e-06, "litellm_provider": "deepseek", "mode": "chat"},
  "deepseek/deepseek-chat": {"input_cost_per_token": 2.7e-07, "output_cost_per_token": 1.1e-06, "litellm_provider": "deepseek", "mode": "chat"},
  "text-embedding-3-small": {"input_cost_per_token": 2e-08, "output_cost_per_token": 0.0, "litellm_provider": "openai", "mode": "embedding"},
  "dall-e-3": {"input_cost_per_pixel": 1e-8, "litellm_provider": "openai", "mode": "image_generation"},
  "tts-1": {"input_cost_per_character": 1.5e-05, "litellm_provider": "openai", "mode": "audio_speech"}
}"#;

fn day() -> chrono::NaiveDate {
    chrono::NaiveDate::from_ymd_opt(2026, 11, 23).unwrap()
}

fn d(s: &str) -> Decimal {
    Decimal::from_str(s).unwrap()
}

fn imported_catalog() -> (Imported, Catalog) {
    let imported = to_overrides(FIXTURE, day(), "litellm-test").unwrap();
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("litellm.toml");
    std::fs::write(&path, &imported.toml).unwrap();
    let catalog = Catalog::load(Some(&path)).unwrap();
    (imported, catalog)
}

/// `provider/name` of the entry a span's (provider, model) is priced by.
fn entry(catalog: &Catalog, provider: &str, model: &str) -> String {
    let e = catalog.lookup_for(provider, model).entry.unwrap_or_else(|| panic!("{provider} {model} is not matched"));
    format!("{}/{}", e.provider, e.name)
}

#[test]
fn plain_names_keep_the_entry_litellm_resolves_and_variants_their_own() {
    let (_, cat) = imported_catalog();
    // The fine-tune is listed first in the file; the plain snapshot keeps its name.
    assert_eq!(entry(&cat, "openai", "gpt-4o-2024-08-06"), "openai/gpt-4o-2024-08-06");
    assert_eq!(entry(&cat, "openai", "ft:gpt-4o-2024-08-06:acme::abc123"), "openai/ft:gpt-4o-2024-08-06");
    assert_eq!(entry(&cat, "az.ai.openai", "gpt-4o-2024-08-06"), "azure/azure/gpt-4o-2024-08-06");
    assert_eq!(entry(&cat, "azure", "azure/eu/gpt-4o-2024-08-06"), "azure/azure/eu/gpt-4o-2024-08-06");
    assert_eq!(entry(&cat, "aws.bedrock", "meta.llama3-70b-instruct-v1:0"), "aws.bedrock/meta.llama3-70b-instruct-v1:0");
    assert_eq!(
        entry(&cat, "aws.bedrock", "anthropic.claude-sonnet-4-5-20250929-v1:0"),
        "aws.bedrock/anthropic.claude-sonnet-4-5-20250929-v1:0"
    );
    // The US data zone's profile is priced as itself (LiteLLM's own entry for that name).
    assert_eq!(
        entry(&cat, "aws.bedrock", "us.anthropic.claude-sonnet-4-5-20250929-v1:0"),
        "aws.bedrock/us.anthropic.claude-sonnet-4-5-20250929-v1:0"
    );
    // LiteLLM looks `deepseek/deepseek-chat` up before `deepseek-chat`.
    assert_eq!(entry(&cat, "deepseek", "deepseek-chat"), "deepseek/deepseek/deepseek-chat");
    // Without a provider, the bare entry (LiteLLM prices a bare name by its bare key).
    assert_eq!(entry(&cat, "", "gpt-4o-2024-08-06"), "openai/gpt-4o-2024-08-06");
}

#[test]
fn prices_tiers_cache_and_reasoning_rates_are_exact() {
    let (_, cat) = imported_catalog();
    let rates = |provider: &str, model: &str, input: u64| cat.lookup_for(provider, model).entry.unwrap().rates(day(), input).unwrap();
    // 2.5e-06 per token x 1,000,000 = 2.5 per 1M; 1e-05 -> 10; 1.25e-06 -> 1.25.
    let r = rates("openai", "gpt-4o-2024-08-06", 1000);
    assert_eq!((r.input, r.output, r.cache_read), (d("2.5"), d("10"), d("1.25")));
    // ft: 3.75e-06 -> 3.75, 1.5e-05 -> 15.
    let r = rates("openai", "ft:gpt-4o-2024-08-06", 1000);
    assert_eq!((r.input, r.output), (d("3.75"), d("15")));
    // Claude: 3 / 15, cache read 0.3, 5-minute write 3.75, 1-hour write 6.
    let r = rates("anthropic", "claude-sonnet-4-5-20250929", 200_000);
    assert_eq!(
        (r.input, r.output, r.cache_read, r.cache_write, r.cache_write_1h, r.tier_above),
        (d("3"), d("15"), d("0.3"), d("3.75"), d("6"), None)
    );
    // Above 200k input tokens: 6 / 22.5, cache read 0.6, cache write 7.5.
    let r = rates("anthropic", "claude-sonnet-4-5-20250929", 200_001);
    assert_eq!((r.input, r.output, r.cache_read, r.cache_write, r.tier_above), (d("6"), d("22.5"), d("0.6"), d("7.5"), Some(200_000)));
    // Gemini 1.5 above 128k: 2.5e-06 -> 2.5, 1e-05 -> 10.
    let r = rates("gcp.gemini", "gemini-1.5-pro", 128_001);
    assert_eq!((r.input, r.output, r.tier_above), (d("2.5"), d("10"), Some(128_000)));
    assert_eq!(rates("gcp.gemini", "gemini-1.5-pro", 128_000).input, d("1.25"));
    // Reasoning 3.5e-06 -> 3.5 per 1M, apart from output 0.6.
    let r = rates("google", "gemini-2.5-flash-preview-04-17", 1);
    assert_eq!((r.output, r.reasoning), (d("0.6"), d("3.5")));
    // 2e-08 -> 0.02; output 0.0 -> 0.
    let r = rates("openai", "text-embedding-3-small", 1);
    assert_eq!((r.input, r.output), (d("0.02"), d("0")));
}

#[test]
fn the_summary_says_what_was_skipped_and_not_carried_by_reason() {
    let (imported, cat) = imported_catalog();
    // 18 entries less sample_spec: 3 skipped (image, speech, per-second),
    // 1 spelling dropped, 14 taken.
    assert_eq!(imported.taken, 14, "{}", imported.summary());
    assert_eq!(imported.variants, BTreeMap::from([("data-zone", 2), ("deployment-tier", 1), ("fine-tune", 1), ("regional", 1)]));
    let skipped: BTreeMap<&str, usize> = imported.skipped.iter().map(|(k, v)| (k.as_str(), v.len())).collect();
    assert_eq!(
        skipped,
        BTreeMap::from([
            ("another spelling of a model of the same provider, whose entry LiteLLM looks up first", 1),
            ("mode audio_speech: not priced per token", 1),
            ("mode image_generation: not priced per token", 1),
            ("no input_cost_per_token (priced per second, character or request)", 1),
        ])
    );
    assert_eq!(imported.skipped["another spelling of a model of the same provider, whose entry LiteLLM looks up first"], ["deepseek-chat"]);
    assert_eq!(
        imported.spellings,
        ["deepseek-chat is another spelling of deepseek/deepseek-chat (deepseek); LiteLLM looks deepseek/deepseek-chat up first"]
    );
    assert_eq!(imported.not_carried, BTreeMap::from([("input_cost_per_token_batches".to_owned(), 2)]));
    let summary = imported.summary();
    assert!(summary.contains("skipped 4 entries:\n"), "{summary}");
    assert!(summary.contains("    2  entries with input_cost_per_token_batches"), "{summary}");
    // Left in the loaded catalog: names sold by several providers, and
    // shipped entries of another spelling, which the imported one beats.
    let same_provider: Vec<&String> =
        cat.collisions().iter().filter(|c| !c.contains("spans of a provider without its own entry")).collect();
    assert_eq!(
        same_provider,
        [
            "'gemini-1-5-pro' is claimed by google/gemini/gemini-1.5-pro and google/gemini-1.5-pro of one provider; google/gemini/gemini-1.5-pro is used",
            "'deepseek-chat' is claimed by deepseek/deepseek/deepseek-chat and deepseek/deepseek-chat of one provider; deepseek/deepseek/deepseek-chat is used"
        ]
    );
}

#[test]
fn malformed_files_are_refused() {
    assert!(to_overrides("[1, 2]", day(), "x").is_err());
    assert!(to_overrides("{\"a\": {\"input_cost_per_token\": 1e-6", day(), "x").is_err());
    let cheap = to_overrides("{\"a\": {\"input_cost_per_token\": \"cheap\", \"mode\": \"chat\"}}", day(), "x").unwrap();
    assert_eq!(
        (cheap.taken, cheap.skipped.keys().map(String::as_str).collect::<Vec<_>>()),
        (0, vec!["input_cost_per_token is not a number"])
    );
}

#[test]
fn variants_are_told_apart_from_plain_names() {
    for (key, provider, kind) in [
        ("ft:gpt-4o-mini-2024-07-18", "openai", Some("fine-tune")),
        ("bedrock/ap-south-1/meta.llama3-70b-instruct-v1:0", "bedrock", Some("regional")),
        ("bedrock/us-gov-west-1/amazon.nova-pro-v1:0", "bedrock", Some("regional")),
        ("bedrock/*/1-month-commitment/cohere.command-light-text-v14", "bedrock", Some("deployment-tier")),
        ("azure/global-standard/gpt-4o-mini", "azure", Some("deployment-tier")),
        ("azure/eu/gpt-4o-mini-2024-07-18", "azure", Some("data-zone")),
        ("eu.anthropic.claude-3-5-sonnet-20240620-v1:0", "bedrock", Some("data-zone")),
        ("azure/gpt-4o-mini", "azure", None),
        ("openrouter/anthropic/claude-3.5-sonnet", "openrouter", None),
        ("vertex_ai/mistralai/codestral-2@001", "vertex_ai-mistral_models", None),
        ("us.amazon.nova-pro-v1:0", "openrouter", None),
    ] {
        assert_eq!(variant_of(key, provider), kind, "{key}");
    }
}
