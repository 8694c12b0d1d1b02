//! `aq-datagen`: writes synthetic measurements as CSV to stdout.
//!
//! ```text
//! aq-datagen                       # the committed postgres/air_quality.csv
//! aq-datagen --rows 1000000        # a benchmark set (more days, same stations)
//! aq-datagen --stations 50 --days 365 --seed 7
//! aq-datagen stations              # the committed postgres/stations.csv
//! aq-datagen stations --stations 50  # the stations of the set above
//! ```

use std::io::{BufWriter, Write};
use std::process::ExitCode;

use datagen::{Options, write_csv, write_stations_csv};
use time::Date;
use time::macros::format_description;

const USAGE: &str = "usage: aq-datagen [--stations N] [--days N] [--start YYYY-MM-DD] [--seed N] [--rows N]\n       aq-datagen stations [--stations N]";

/// What to write.
enum Output {
    Measurements(Options),
    Stations(usize),
}

fn parse_args(args: impl Iterator<Item = String>) -> Result<Options, String> {
    let mut options = Options::default();
    let mut args = args.peekable();
    while let Some(flag) = args.next() {
        if flag == "--help" || flag == "-h" {
            return Err(USAGE.to_owned());
        }
        let value = args
            .next()
            .ok_or_else(|| format!("{flag} needs a value\n{USAGE}"))?;
        let number = || {
            value
                .parse::<u64>()
                .map_err(|_| format!("{flag}: '{value}' is not a whole number"))
        };
        match flag.as_str() {
            "--stations" => options.stations = number()? as usize,
            "--days" => options.days = u32::try_from(number()?).map_err(|e| e.to_string())?,
            "--seed" => options.seed = number()?,
            "--rows" => options.rows = Some(number()?),
            "--start" => {
                options.start = Date::parse(&value, format_description!("[year]-[month]-[day]"))
                    .map_err(|e| format!("--start: '{value}': {e}"))?;
            }
            _ => return Err(format!("unknown argument '{flag}'\n{USAGE}")),
        }
    }
    if options.stations == 0 {
        return Err("--stations must be at least 1".to_owned());
    }
    Ok(options)
}

fn parse_output(mut args: impl Iterator<Item = String>) -> Result<Output, String> {
    let mut args = args.by_ref().peekable();
    if args.peek().map(String::as_str) == Some("stations") {
        args.next();
        let options = parse_args(args)?;
        if options
            != (Options {
                stations: options.stations,
                ..Options::default()
            })
        {
            return Err(format!("stations takes --stations only\n{USAGE}"));
        }
        return Ok(Output::Stations(options.stations));
    }
    parse_args(args).map(Output::Measurements)
}

fn main() -> ExitCode {
    let output = match parse_output(std::env::args().skip(1)) {
        Ok(output) => output,
        Err(message) => {
            eprintln!("{message}");
            return ExitCode::from(2);
        }
    };
    let stdout = std::io::stdout().lock();
    let mut out = BufWriter::with_capacity(1 << 16, stdout);
    let written = match output {
        Output::Measurements(options) => write_csv(&mut out, options),
        Output::Stations(count) => write_stations_csv(&mut out, count),
    };
    match written.and_then(|n| out.flush().map(|()| n)) {
        Ok(rows) => {
            eprintln!("aq-datagen: wrote {rows} rows");
            ExitCode::SUCCESS
        }
        Err(error) => {
            eprintln!("aq-datagen: {error}");
            ExitCode::FAILURE
        }
    }
}
