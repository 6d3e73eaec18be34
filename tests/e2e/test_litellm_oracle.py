"""costplane's LiteLLM price import against LiteLLM itself.

LiteLLM 1.80.0 (pinned with its wheel's hash in tests/requirements-litellm.txt)
is the oracle: its own bundled price file (model_prices_and_context_window_backup.json)
is imported with `costplane prices import --format litellm`, `costplane serve`
loads the result as its price overrides, the Python OpenTelemetry SDK sends
one span per case over OTLP/HTTP, and each case's cost read from the ledger
through the cost API must equal what LiteLLM's `cost_per_token` computes
for the same model and token mix.

LiteLLM computes in binary floats (`tokens * 2.5e-06`), so its figure is the
exact decimal cost rounded to about 16 significant digits; costplane's is
exact. They are compared with a relative tolerance of 1e-12, which only that
float rounding can use up (every price in the file has at most 5
significant digits; a wrong rate or token count moves the cost by far more).

Token mixes follow what each provider reports: OTel GenAI input counts
include cached tokens; OpenAI's output includes its reasoning tokens (LiteLLM:
`reasoning_tokens` without `text_tokens`, billed at the output rate); Gemini
reports thinking tokens apart from the candidates (LiteLLM: `text_tokens`
plus `reasoning_tokens`, each at its own rate)."""

import importlib
import importlib.metadata
import json
import os
import subprocess
import time
from decimal import Decimal
from pathlib import Path

import pytest
from conftest import Server, api_request, costplane_bin, iso
from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor

LITELLM_VERSION = "1.80.0"
ADMIN = "admin-key-0123456789abcdef"
HOUR = 3_600_000_000_000
NOW = time.time_ns()
T = NOW - NOW % HOUR - HOUR  # the calls' hour: closed at once (close_after_secs = 0)
WINDOW = f"from={iso(T)}&to={iso(T + 2 * HOUR)}"
TOLERANCE = Decimal("1e-12")

# (LiteLLM provider, model as the span names it, span provider, input tokens
# (cached included), output tokens, cache reads, cache writes, reasoning
# tokens, whether reasoning is counted apart from output (Gemini)).
CASES = [
    # gpt-4o and gpt-4o-mini: their ft: variants used to take these names.
    ("openai", "gpt-4o", "openai", 1_200, 300, 0, 0, 0, False),
    ("openai", "gpt-4o-2024-08-06", "openai", 10_000, 2_000, 4_000, 0, 0, False),
    ("openai", "gpt-4o-mini", "openai", 5_000, 700, 0, 0, 0, False),
    ("openai", "gpt-4o-mini-2024-07-18", "openai", 20_000, 1_500, 8_000, 0, 0, False),
    # The fine-tunes themselves, by the names OpenAI gives them.
    ("openai", "ft:gpt-4o-mini-2024-07-18:acme:support:abc123", "openai", 3_000, 400, 1_000, 0, 0, False),
    ("openai", "ft:gpt-4o-2024-08-06:acme:support:xyz789", "openai", 2_000, 500, 0, 0, 0, False),
    # Reasoning models: reasoning inside the output count.
    ("openai", "o3-mini", "openai", 4_000, 3_000, 0, 0, 2_400, False),
    ("openai", "o1", "openai", 1_500, 5_000, 0, 0, 4_200, False),
    ("openai", "gpt-5", "openai", 3_000, 6_000, 1_000, 0, 5_000, False),
    ("openai", "gpt-5.1", "openai", 2_222, 1_111, 0, 0, 0, False),
    ("openai", "text-embedding-3-small", "openai", 8_191, 0, 0, 0, 0, False),
    # Azure: the plain names, which the EU data zone and global-standard entries used to take.
    ("azure", "gpt-4o", "az.ai.openai", 7_000, 900, 2_000, 0, 0, False),
    ("azure", "gpt-4o-mini-2024-07-18", "az.ai.openai", 100_000, 3_000, 0, 0, 0, False),
    ("azure", "o3-mini", "az.ai.openai", 5_000, 4_000, 0, 0, 3_000, False),
    # Bedrock: the default price, which ap-south-1's used to replace, and a data zone's own.
    ("bedrock", "anthropic.claude-3-5-sonnet-20241022-v2:0", "aws.bedrock", 6_000, 800, 2_000, 1_000, 0, False),
    ("bedrock", "meta.llama3-70b-instruct-v1:0", "aws.bedrock", 2_500, 600, 0, 0, 0, False),
    ("bedrock", "amazon.nova-pro-v1:0", "aws.bedrock", 4_000, 1_000, 0, 0, 0, False),
    ("bedrock", "us.anthropic.claude-3-5-sonnet-20241022-v2:0", "aws.bedrock", 3_000, 500, 0, 0, 0, False),
    # Gemini 1.5 above and below its 128k tier; 2.5 Pro above 200k with cache reads.
    ("gemini", "gemini-1.5-pro", "gcp.gemini", 150_000, 2_000, 0, 0, 0, False),
    ("gemini", "gemini-1.5-pro", "gcp.gemini", 100_000, 2_000, 0, 0, 0, False),
    ("gemini", "gemini-1.5-flash", "gcp.gemini", 200_000, 5_000, 0, 0, 0, False),
    ("gemini", "gemini-2.5-pro", "gcp.gemini", 250_000, 4_000, 50_000, 0, 0, False),
    # Gemini thinking tokens apart from the output, at their own rate.
    ("gemini", "gemini-2.5-flash-preview-04-17", "gcp.gemini", 2_000, 300, 0, 0, 1_200, True),
    ("gemini", "gemini-2.5-flash", "gcp.gemini", 5_000, 800, 1_000, 0, 2_000, True),
    ("gemini", "gemini-2.0-flash", "gcp.gemini", 10_000, 1_000, 4_000, 0, 0, False),
    # Claude with cache reads and (5-minute) writes, below and above 200k.
    ("anthropic", "claude-sonnet-4-5-20250929", "anthropic", 12_000, 1_000, 6_000, 2_000, 0, False),
    ("anthropic", "claude-sonnet-4-5-20250929", "anthropic", 250_000, 3_000, 100_000, 20_000, 0, False),
    ("anthropic", "claude-3-7-sonnet-20250219", "anthropic", 9_000, 700, 3_000, 2_000, 0, False),
    ("anthropic", "claude-3-5-haiku-20241022", "anthropic", 4_000, 1_000, 0, 0, 0, False),
    ("anthropic", "claude-opus-4-1-20250805", "anthropic", 3_000, 500, 1_000, 0, 0, False),
    ("deepseek", "deepseek-chat", "deepseek", 6_000, 1_000, 2_000, 0, 0, False),
    ("deepseek", "deepseek-reasoner", "deepseek", 3_000, 4_000, 0, 0, 3_500, False),
    ("mistral", "mistral-large-latest", "mistral_ai", 5_000, 1_000, 0, 0, 0, False),
    ("xai", "grok-4", "xai", 5_000, 1_000, 0, 0, 0, False),
    ("groq", "llama-3.3-70b-versatile", "groq", 3_000, 800, 0, 0, 0, False),
]


def service(i):
    return f"case-{i:02d}"


@pytest.fixture(scope="module")
def litellm():
    """LiteLLM, from the test virtualenv: a missing or other version fails
    the test (scripts/test.sh installs the pinned one)."""
    # The bundled price file, not one fetched at import time.
    os.environ["LITELLM_LOCAL_MODEL_COST_MAP"] = "True"
    try:
        module = importlib.import_module("litellm")
    except ImportError as e:
        pytest.fail(f"LiteLLM is not installed in the test virtualenv ({e}); run scripts/test.sh, "
                    "which installs tests/requirements-litellm.txt", pytrace=False)
    version = importlib.metadata.version("litellm")
    assert version == LITELLM_VERSION, f"LiteLLM {version} is installed; the oracle is the pinned {LITELLM_VERSION}"
    return module


def litellm_cost(litellm, case):
    """LiteLLM's `cost_per_token` for one case, as a Decimal of its float."""
    from litellm.types.utils import CompletionTokensDetailsWrapper, PromptTokensDetailsWrapper, Usage

    provider, model, _, inp, out, cache_read, cache_write, reasoning, apart = case
    completion = out + reasoning if apart else out
    details = None
    if reasoning:
        # Apart (Gemini): text and reasoning tokens each at their rate.
        # Inside (OpenAI): LiteLLM bills the whole output at the output rate.
        details = CompletionTokensDetailsWrapper(reasoning_tokens=reasoning, text_tokens=out if apart else None)
    usage = Usage(
        prompt_tokens=inp,
        completion_tokens=completion,
        total_tokens=inp + completion,
        prompt_tokens_details=PromptTokensDetailsWrapper(cached_tokens=cache_read, cache_creation_tokens=cache_write),
        completion_tokens_details=details,
    )
    # Providers without a cost function of their own (mistral, groq) are
    # priced from the plain counts, the others from the usage object.
    prompt_cost, completion_cost = litellm.cost_per_token(
        model=model, custom_llm_provider=provider, prompt_tokens=inp, completion_tokens=completion, usage_object=usage)
    return Decimal(repr(prompt_cost + completion_cost))


@pytest.fixture(scope="module")
def ledger(litellm, tmp_path_factory):
    """Each case's cost in costplane's ledger, by case index."""
    tmp = tmp_path_factory.mktemp("litellm-oracle")
    source = Path(litellm.__file__).parent / "model_prices_and_context_window_backup.json"
    assert source.is_file(), f"LiteLLM {LITELLM_VERSION} ships no {source.name}"
    prices = tmp / "litellm.toml"
    run = subprocess.run(
        [costplane_bin(), "prices", "import", "--format", "litellm", str(source), "--out", str(prices), "--effective", "2024-01-01"],
        capture_output=True, text=True, check=False)
    assert run.returncode == 0, run.stderr
    # The summary says what was skipped and why, and where the collisions are listed.
    assert "skipped" in run.stderr and "mode image_generation: not priced per token" in run.stderr, run.stderr
    listing = prices.with_suffix(".collisions.txt")
    assert listing.is_file() and f"listed in {listing}" in run.stderr, run.stderr
    config = tmp / "costplane.toml"
    config.write_text(f"""
[cost]
price_overrides = "{prices}"
[ledger]
close_after_secs = 0
refresh_secs = 1
[[api.keys]]
key = "{ADMIN}"
role = "admin"
""")
    server = Server(tmp, extra_args=["--config", str(config)])
    try:
        # Collisions are logged as a count (once per catalog load), never a line per name.
        log = server.log()
        assert "model names are claimed by more than one price entry" in log and "is claimed by" not in log, log[-3000:]
        send(server)
        yield read_ledger(server)
    finally:
        if server.proc.poll() is None:
            server.proc.kill()
            server.proc.wait()


def send(server):
    for i, (_, model, provider, inp, out, cache_read, cache_write, reasoning, _) in enumerate(CASES):
        traces = TracerProvider(resource=Resource.create({"service.name": service(i)}))
        traces.add_span_processor(SimpleSpanProcessor(OTLPSpanExporter(endpoint=f"http://127.0.0.1:{server.http_port}/v1/traces")))
        attrs = {
            "gen_ai.operation.name": "embeddings" if "embedding" in model else "chat",
            "gen_ai.provider.name": provider,
            "gen_ai.request.model": model,
            "gen_ai.usage.input_tokens": inp,
            "gen_ai.usage.output_tokens": out,
        }
        for key, n in [("gen_ai.usage.cache_read.input_tokens", cache_read),
                       ("gen_ai.usage.cache_creation.input_tokens", cache_write),
                       ("gen_ai.usage.reasoning.output_tokens", reasoning)]:
            if n:
                attrs[key] = n
        span = traces.get_tracer("oracle").start_span(f"chat {model}", start_time=T + i * 1_000_000, attributes=attrs)
        span.end(end_time=T + i * 1_000_000 + 500_000)
        traces.shutdown()


def read_ledger(server):
    """The cost per case once every case is booked and two reads agree."""
    deadline, last = time.time() + 60, None
    while time.time() < deadline:
        status, _, body = api_request(server, f"/api/v1/costs?{WINDOW}&source=llm&group_by=service", ADMIN)
        assert status == 200, body
        rows = {r["service"]: Decimal(r["cost"]) for r in json.loads(body)["rows"]}
        got = {i: rows[service(i)] for i in range(len(CASES)) if service(i) in rows}
        if len(got) == len(CASES) and got == last:
            return got
        last = got
        time.sleep(1)
    raise AssertionError(f"{len(last or {})} of {len(CASES)} cases booked: {last}\n{server.log()[-3000:]}")


@pytest.mark.parametrize("i", range(len(CASES)), ids=[f"{c[1]}-{c[3]}in" for c in CASES])
def test_costplane_prices_each_case_as_litellm_does(litellm, ledger, i):
    ours = ledger[i]
    theirs = litellm_cost(litellm, CASES[i])
    assert theirs > 0, CASES[i]
    assert abs(ours - theirs) <= TOLERANCE * theirs, f"{CASES[i]}: costplane {ours}, LiteLLM {theirs}"

