//! `costplane prices list [PATTERN]`, `costplane prices check MODEL`,
//! `costplane prices collisions` and `costplane prices import --format litellm FILE`.

use std::io::Write;
use std::path::PathBuf;

use anyhow::Context;
use clap::{Args, Subcommand};
use costplane_cost::catalog::ModelEntry;
use costplane_cost::Catalog;

#[derive(Subcommand)]
pub enum PricesCommand {
    /// List catalog entries whose provider or name contains PATTERN.
    List(ListArgs),
    /// Show which catalog entry a model name matches, why, and its rates.
    Check(CheckArgs),
    /// Turn another price list into a price override file (printed, or --out).
    Import(ImportArgs),
    /// List the model names more than one catalog entry claims, and the entry used.
    Collisions(CatalogArgs),
}

#[derive(Clone, Copy, clap::ValueEnum)]
pub enum ImportFormat {
    /// LiteLLM's model_prices_and_context_window.json.
    Litellm,
}

#[derive(Args)]
pub struct ImportArgs {
    /// The file to read.
    file: PathBuf,
    #[arg(long, value_enum)]
    format: ImportFormat,
    /// Write the override file here instead of standard output.
    #[arg(long)]
    out: Option<PathBuf>,
    /// Write the names claimed twice once the file is loaded (and the
    /// spellings dropped) here; default: beside --out, `.collisions.txt`.
    #[arg(long)]
    collisions: Option<PathBuf>,
    /// The day the imported prices take effect (default today), YYYY-MM-DD.
    #[arg(long)]
    effective: Option<chrono::NaiveDate>,
}

#[derive(Args)]
pub struct CatalogArgs {
    /// A price file in the catalog's format whose entries beat the shipped ones.
    #[arg(long, env = "COSTPLANE_PRICE_OVERRIDES")]
    overrides: Option<PathBuf>,
}

#[derive(Args)]
pub struct ListArgs {
    pattern: Option<String>,
    #[command(flatten)]
    catalog: CatalogArgs,
}

#[derive(Args)]
pub struct CheckArgs {
    /// The model name as spans carry it, e.g. us.anthropic.claude-3-5-sonnet-20241022-v2:0
    model: String,
    /// Day whose prices apply (default today), YYYY-MM-DD.
    #[arg(long)]
    date: Option<chrono::NaiveDate>,
    /// Input tokens of the request, to show which tier applies.
    #[arg(long, default_value_t = 0)]
    input_tokens: u64,
    #[command(flatten)]
    catalog: CatalogArgs,
}

fn load(args: &CatalogArgs) -> anyhow::Result<Catalog> {
    Catalog::load(args.overrides.as_deref()).context("loading the price catalog")
}

fn price_line(m: &ModelEntry) -> String {
    let p = m.prices.last().expect("catalog entries have prices");
    let mut line = format!("in {} / out {}", p.input, p.output);
    if let Some(c) = p.cache_read {
        line.push_str(&format!(" / cache read {c}"));
    }
    if let Some(c) = p.cache_write {
        line.push_str(&format!(" / cache write {c}"));
    }
    if let Some(c) = p.cache_write_1h {
        line.push_str(&format!(" / 1h cache write {c}"));
    }
    if let Some(r) = p.reasoning {
        line.push_str(&format!(" / reasoning {r}"));
    }
    for t in &p.tiers {
        line.push_str(&format!(" / above {} input: in {} out {}", t.above_input_tokens, t.input, t.output));
    }
    format!("{line}  (since {})", p.effective)
}

pub fn run(cmd: PricesCommand) -> anyhow::Result<()> {
    // Written with `writeln!`, not `println!`: a closed pipe (`| head`) is
    // an error the caller ends quietly on, not a panic.
    let mut out = std::io::stdout().lock();
    match cmd {
        PricesCommand::List(args) => {
            let catalog = load(&args.catalog)?;
            let pattern = args.pattern.unwrap_or_default().to_ascii_lowercase();
            writeln!(out, "catalog {} ({} per 1M tokens)", catalog.version, catalog.currency)?;
            let mut shown = 0;
            for m in catalog.models() {
                if m.name.contains(&pattern) || m.provider.contains(&pattern) {
                    writeln!(out, "{:<10} {:<28} {}", m.provider, m.name, price_line(m))?;
                    shown += 1;
                }
            }
            if shown == 0 {
                anyhow::bail!("no catalog entry matches '{pattern}'");
            }
        }
        PricesCommand::Import(args) => {
            let text = std::fs::read_to_string(&args.file).with_context(|| format!("cannot read {}", args.file.display()))?;
            let day = args.effective.unwrap_or_else(|| chrono::Utc::now().date_naive());
            let imported = match args.format {
                ImportFormat::Litellm => crate::litellm::to_overrides(&text, day, &format!("litellm-{day}"))?,
            };
            match &args.out {
                Some(path) => std::fs::write(path, &imported.toml).with_context(|| format!("cannot write {}", path.display()))?,
                None => out.write_all(imported.toml.as_bytes())?,
            }
            eprint!("{}", imported.summary());
            eprintln!("prices effective {day}");
            // The collisions as the server will see them: the file loaded
            // over the shipped catalog.
            let dir = tempfile::tempdir().context("a temporary directory")?;
            let loaded = dir.path().join("imported.toml");
            std::fs::write(&loaded, &imported.toml).context("writing the imported file to check it")?;
            let catalog = Catalog::load(Some(&loaded)).context("the imported file does not load")?;
            let listing = args.collisions.clone().or_else(|| args.out.as_ref().map(|o| o.with_extension("collisions.txt")));
            let count = catalog.collisions().len() + imported.spellings.len();
            match listing {
                Some(path) => {
                    let mut text = String::new();
                    for line in imported.spellings.iter().chain(catalog.collisions()) {
                        text.push_str(line);
                        text.push('\n');
                    }
                    std::fs::write(&path, text).with_context(|| format!("cannot write {}", path.display()))?;
                    eprintln!("{count} names are claimed by more than one entry; listed in {}", path.display());
                }
                None => eprintln!("{count} names are claimed by more than one entry; --collisions FILE lists them"),
            }
        }
        PricesCommand::Collisions(args) => {
            let catalog = load(&args)?;
            for line in catalog.collisions() {
                writeln!(out, "{line}")?;
            }
            eprintln!("{} names are claimed by more than one entry (catalog {})", catalog.collisions().len(), catalog.version);
        }
        PricesCommand::Check(args) => {
            let catalog = load(&args.catalog)?;
            let found = catalog.lookup(&args.model);
            writeln!(out, "model:      {}", args.model)?;
            writeln!(out, "looked up:  {}", found.normalized.key)?;
            for step in &found.normalized.steps {
                writeln!(out, "            - {step}")?;
            }
            let Some(entry) = found.entry else {
                anyhow::bail!("no catalog entry for '{}': its usage is reported as unpriced; add it to a --overrides file", args.model);
            };
            let origin = if found.from_override { "your override file" } else { "the shipped catalog" };
            writeln!(out, "matched:    {}/{} (from {origin}, catalog {})", entry.provider, entry.name, catalog.version)?;
            let day = args.date.unwrap_or_else(|| chrono::Utc::now().date_naive());
            match entry.rates(day, args.input_tokens) {
                Some(r) => {
                    writeln!(out, "effective:  {} (prices in force on {day})", r.effective)?;
                    if let Some(t) = r.tier_above {
                        writeln!(out, "tier:       above {t} input tokens")?;
                    }
                    writeln!(
                        out,
                        "per 1M:     input {} · output {} · cache read {} · cache write {} · 1h cache write {} · reasoning {} {}",
                        r.input, r.output, r.cache_read, r.cache_write, r.cache_write_1h, r.reasoning, catalog.currency
                    )?;
                }
                None => anyhow::bail!("no price for {}/{} in force on {day}", entry.provider, entry.name),
            }
        }
    }
    out.flush()?;
    Ok(())
}
