//! Replays a fixture file and prints its window report (text), optionally writing the JSON and SVG.
//!
//! `cargo run -p bakery-diagnosis --example replay -- tests/fixtures/ingress-concentration.toml [--svg FILE] [--json FILE] [--changes]`

use bakery_diagnosis::fixture::Fixture;
use bakery_diagnosis::{Config, Detector, WindowReport};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut args = std::env::args().skip(1);
    let path = args.next().ok_or("usage: replay FIXTURE.toml [--svg FILE] [--json FILE] [--changes]")?;
    let (mut svg, mut json, mut changes) = (None, None, false);
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "--svg" => svg = Some(args.next().ok_or("--svg needs a file")?),
            "--json" => json = Some(args.next().ok_or("--json needs a file")?),
            "--changes" => changes = true,
            other => return Err(format!("unknown argument {other}").into()),
        }
    }
    let fixture: Fixture = toml::from_str(&std::fs::read_to_string(&path)?)?;
    let ticks = fixture.ticks()?;
    let config = Config::default();
    if changes {
        let mut detector = Detector::new(config.clone())?;
        for tick in &ticks {
            for change in detector.observe(tick)?.changes {
                println!("{:+.2} s  {change}", (change.at_ms - fixture.start_ms) as f64 / 1000.0);
            }
        }
    }
    let report = WindowReport::build(fixture.window(), &ticks, &config)?;
    println!("{report}");
    if let Some(file) = svg {
        std::fs::write(file, report.to_svg())?;
    }
    if let Some(file) = json {
        std::fs::write(file, report.to_json()?)?;
    }
    Ok(())
}
