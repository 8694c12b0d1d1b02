//! Synthetic, deterministic air-quality measurements.
//!
//! The same [`Options`] always produce the same bytes, on every machine and
//! version: the random numbers come from SplitMix64 written out below (a crate's
//! generator may change its output between releases, which would silently change
//! the committed `postgres/air_quality.csv`).
//!
//! The model: every station has a profile (traffic, background, mountain,
//! industrial). Traffic pollutants (NO2, CO, PM) peak at the morning and evening
//! rush hours and drop at weekends; ozone peaks in the afternoon and is lower
//! where NO2 is high; a slow seasonal drift and persistent "weather" noise
//! (AR(1)) move everything. Sensors drop single readings now and then and have
//! outages of a few hours, written as empty CSV fields.

use std::io::{self, Write};

use time::{Date, Duration, Month, PrimitiveDateTime, Time, Weekday};

/// The CSV header, as in the original data.
pub const HEADER: &str = "TimeInstant,id_entity,so2,no2,co,o3,pm10,pm2_5";

/// Station names; beyond this list stations are `aq_station_NNNN`.
const STATION_NAMES: &[&str] = &[
    "aq_salvia",
    "aq_jaen",
    "aq_nevero",
    "aq_romero",
    "aq_tomillo",
    "aq_cartuja",
    "aq_albaicin",
    "aq_zaidin",
    "aq_genil",
    "aq_darro",
    "aq_sacromonte",
    "aq_alhambra",
];

/// The header of `postgres/stations.csv`.
pub const STATIONS_HEADER: &str =
    "id_entity,name,latitude,longitude,elevation_m,area,station_type,timezone";

/// Hand-placed stations (name, latitude, longitude, elevation in m), in the
/// order of [`STATION_NAMES`]: plausible places in and around Granada for
/// stations that exist only in this synthetic data set.
const NAMED_PLACES: &[(&str, f64, f64, f64)] = &[
    ("Salvia (Granada centre)", 37.1760, -3.5990, 685.0),
    ("Jaén", 37.7790, -3.7870, 574.0),
    ("Nevero (Sierra Nevada)", 37.0960, -3.3970, 2100.0),
    ("Romero (Atarfe industrial estate)", 37.2220, -3.6880, 560.0),
    ("Tomillo (Camino de Ronda)", 37.1690, -3.6060, 675.0),
    ("Cartuja (university campus)", 37.1940, -3.5990, 740.0),
    ("Albaicín (Sierra de Huétor edge)", 37.2000, -3.5500, 1050.0),
    ("Zaidín (Armilla industrial)", 37.1400, -3.6250, 665.0),
    ("Genil (ring road)", 37.1610, -3.5880, 690.0),
    ("Darro (old town)", 37.1780, -3.5900, 700.0),
    ("Sacromonte (hills)", 37.1830, -3.5800, 780.0),
    ("Alhambra (Dehesa del Generalife)", 37.1790, -3.5700, 820.0),
];

/// A station's description, one line of `postgres/stations.csv`.
#[derive(Debug, Clone, PartialEq)]
pub struct StationInfo {
    pub id_entity: String,
    pub name: String,
    pub latitude: f64,
    pub longitude: f64,
    pub elevation_m: f64,
    /// `urban`, `suburban` or `rural`.
    pub area: &'static str,
    /// `traffic`, `industrial` or `background`.
    pub station_type: &'static str,
    /// IANA time zone.
    pub timezone: &'static str,
}

/// The first `count` stations, as the measurements name them. Stations past
/// the named ones get a place of their own, derived from their number only
/// (the same whatever the seed): most in Andalusia, every tenth in the Canary
/// Islands, an hour behind.
pub fn stations(count: usize) -> Vec<StationInfo> {
    (0..count).map(station_info).collect()
}

fn station_info(index: usize) -> StationInfo {
    let (area, station_type) = match index % 4 {
        0 => ("urban", "traffic"),
        1 => ("urban", "background"),
        2 => ("rural", "background"),
        _ => ("suburban", "industrial"),
    };
    let (name, latitude, longitude, elevation_m, timezone) = match NAMED_PLACES.get(index) {
        Some(&(name, lat, lon, elevation)) => {
            (name.to_owned(), lat, lon, elevation, "Europe/Madrid")
        }
        None => {
            let mut rng = SplitMix64(0x5EED_57A7_1015 ^ (index as u64).wrapping_mul(0x9E37_79B9));
            let canary = index % 10 == 9;
            let (lat, lon) = if canary {
                (27.9 + 0.7 * rng.unit(), -16.9 + 1.5 * rng.unit())
            } else {
                (36.5 + 1.8 * rng.unit(), -6.5 + 4.5 * rng.unit())
            };
            let elevation = if area == "rural" {
                800.0 + 1700.0 * rng.unit()
            } else {
                800.0 * rng.unit()
            };
            let zone = if canary {
                "Atlantic/Canary"
            } else {
                "Europe/Madrid"
            };
            let round = |x: f64| (x * 10_000.0).round() / 10_000.0;
            (
                format!("Station {index:04}"),
                round(lat),
                round(lon),
                elevation.round(),
                zone,
            )
        }
    };
    StationInfo {
        id_entity: station_name(index),
        name,
        latitude,
        longitude,
        elevation_m,
        area,
        station_type,
        timezone,
    }
}

/// Writes the header and the first `count` stations as CSV.
pub fn write_stations_csv(out: &mut impl Write, count: usize) -> io::Result<u64> {
    writeln!(out, "{STATIONS_HEADER}")?;
    for station in stations(count) {
        writeln!(
            out,
            "{},{},{},{},{},{},{},{}",
            station.id_entity,
            csv_field(&station.name),
            station.latitude,
            station.longitude,
            station.elevation_m,
            station.area,
            station.station_type,
            station.timezone
        )?;
    }
    Ok(count as u64)
}

/// A CSV field, quoted when it holds a comma or a quote.
fn csv_field(text: &str) -> String {
    if text.contains([',', '"', '\n']) {
        format!("\"{}\"", text.replace('"', "\"\""))
    } else {
        text.to_owned()
    }
}

/// What to generate.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Options {
    pub stations: usize,
    pub days: u32,
    pub start: Date,
    pub seed: u64,
    /// Stop after this many rows (`days` is then extended as needed).
    pub rows: Option<u64>,
}

impl Default for Options {
    /// The committed `postgres/air_quality.csv`: 6 stations, 61 days from 2016-10-01.
    fn default() -> Self {
        Self {
            stations: 6,
            days: 61,
            start: Date::from_calendar_date(2016, Month::October, 1).unwrap_or(Date::MIN),
            seed: 2016,
            rows: None,
        }
    }
}

impl Options {
    /// How many rows these options produce.
    pub fn row_count(&self) -> u64 {
        let full = self.stations as u64 * 24 * u64::from(self.days);
        match self.rows {
            Some(rows) => rows,
            None => full,
        }
    }
}

/// One measurement; `None` is an empty reading.
#[derive(Debug, Clone, PartialEq)]
pub struct Row {
    pub time_instant: PrimitiveDateTime,
    pub id_entity: String,
    pub so2: Option<f64>,
    pub no2: Option<f64>,
    pub co: Option<f64>,
    pub o3: Option<f64>,
    pub pm10: Option<f64>,
    pub pm2_5: Option<f64>,
}

/// SplitMix64 (Steele, Lea, Flood 2014): tiny, fast, and its output is fixed forever.
#[derive(Debug, Clone)]
struct SplitMix64(u64);

impl SplitMix64 {
    fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// Uniform in [0, 1).
    fn unit(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 / (1u64 << 53) as f64
    }

    /// Standard normal (Box-Muller).
    fn normal(&mut self) -> f64 {
        let u1 = self.unit().max(f64::MIN_POSITIVE);
        let u2 = self.unit();
        (-2.0 * u1.ln()).sqrt() * (std::f64::consts::TAU * u2).cos()
    }
}

/// Pollutants in CSV order.
const POLLUTANTS: usize = 6;
const SO2: usize = 0;
const NO2: usize = 1;
const CO: usize = 2;
const O3: usize = 3;
const PM10: usize = 4;
const PM25: usize = 5;

/// Typical level of each pollutant at a station (µg/m³, CO in mg/m³) and how much
/// of it follows traffic.
#[derive(Debug, Clone)]
struct Profile {
    base: [f64; POLLUTANTS],
    traffic: f64,
}

fn profile(index: usize) -> Profile {
    match index % 4 {
        // Urban traffic.
        0 => Profile {
            base: [5.0, 42.0, 0.55, 38.0, 26.0, 12.0],
            traffic: 1.0,
        },
        // Urban background.
        1 => Profile {
            base: [4.0, 28.0, 0.40, 48.0, 21.0, 10.0],
            traffic: 0.6,
        },
        // Mountain / rural.
        2 => Profile {
            base: [2.0, 9.0, 0.20, 72.0, 12.0, 6.0],
            traffic: 0.15,
        },
        // Industrial.
        _ => Profile {
            base: [14.0, 33.0, 0.50, 42.0, 30.0, 15.0],
            traffic: 0.7,
        },
    }
}

pub fn station_name(index: usize) -> String {
    STATION_NAMES.get(index).map_or_else(
        || format!("aq_station_{index:04}"),
        |name| (*name).to_owned(),
    )
}

/// Rush-hour shape: peaks near 08:00 and 20:00, quiet at night; mean about 1.
fn traffic_shape(hour: f64) -> f64 {
    let peak = |center: f64, width: f64| (-((hour - center) / width).powi(2)).exp();
    0.45 + 1.1 * peak(8.0, 1.8) + 0.9 * peak(20.0, 2.2) + 0.25 * peak(14.0, 3.0)
}

/// Ozone follows sunlight: low at night, peak mid-afternoon.
fn sun_shape(hour: f64) -> f64 {
    let daylight = ((hour - 9.0) / 12.0 * std::f64::consts::PI).sin().max(0.0);
    0.55 + 0.9 * daylight.powf(1.5)
}

struct Station {
    name: String,
    profile: Profile,
    /// Persistent weather noise per pollutant.
    weather: [f64; POLLUTANTS],
    /// Hours left in a sensor outage, per pollutant.
    outage: [u32; POLLUTANTS],
}

/// Streams rows in time order (every station for one hour, then the next hour).
#[derive(Debug)]
pub struct Generator {
    options: Options,
    rng: SplitMix64,
    stations: Vec<StationState>,
    hour_index: u64,
    station_index: usize,
    emitted: u64,
}

// A named wrapper so `Generator` can derive Debug without printing every station.
struct StationState(Station);

impl std::fmt::Debug for StationState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0.name)
    }
}

impl Generator {
    pub fn new(options: Options) -> Self {
        let stations = (0..options.stations)
            .map(|i| {
                StationState(Station {
                    name: station_name(i),
                    profile: profile(i),
                    weather: [0.0; POLLUTANTS],
                    outage: [0; POLLUTANTS],
                })
            })
            .collect();
        Self {
            rng: SplitMix64(options.seed),
            options,
            stations,
            hour_index: 0,
            station_index: 0,
            emitted: 0,
        }
    }

    fn limit_reached(&self) -> bool {
        match self.options.rows {
            Some(rows) => self.emitted >= rows,
            None => self.hour_index >= u64::from(self.options.days) * 24,
        }
    }

    fn measure(&mut self, hour_index: u64, station: usize) -> Row {
        let day = hour_index / 24;
        let hour = (hour_index % 24) as f64;
        let date = self.options.start + Duration::days(day as i64);
        let weekend = matches!(date.weekday(), Weekday::Saturday | Weekday::Sunday);
        // Autumn: nights get longer, heating starts, ozone fades.
        let season = day as f64 / 61.0;
        let millis = (self.rng.next_u64() % 1000) as u16;
        let time =
            Time::from_hms_milli((hour_index % 24) as u8, 0, 0, millis).unwrap_or(Time::MIDNIGHT);

        let rng = &mut self.rng;
        let state = &mut self.stations[station].0;
        let traffic_week = if weekend { 0.62 } else { 1.0 };
        let traffic = 1.0 + state.profile.traffic * (traffic_shape(hour) * traffic_week - 1.0);
        let mut values = [None; POLLUTANTS];
        for (p, value) in values.iter_mut().enumerate() {
            // AR(1): today's weather remembers yesterday's.
            state.weather[p] = 0.93 * state.weather[p] + 0.12 * rng.normal();
            let shape = match p {
                NO2 | CO => traffic * (1.0 + 0.25 * season),
                PM10 | PM25 => 0.6 + 0.4 * traffic + 0.15 * season,
                SO2 => 1.0 + 0.3 * season,
                O3 => sun_shape(hour) * (1.25 - 0.35 * traffic.min(2.0)) * (1.0 - 0.3 * season),
                _ => 1.0,
            };
            let level = state.profile.base[p]
                * shape
                * state.weather[p].exp()
                * (1.0 + 0.08 * rng.normal());
            let missing_draw = rng.unit();
            if state.outage[p] > 0 {
                state.outage[p] -= 1;
            } else if missing_draw < 0.0008 {
                // An outage of 3 to 12 hours starts now.
                state.outage[p] = 2 + (rng.next_u64() % 10) as u32;
            } else if missing_draw > 0.992 {
                // A single dropped reading.
            } else {
                let decimals = if p == CO { 10_000.0 } else { 1_000.0 };
                *value = Some((level.max(0.0) * decimals).round() / decimals);
            }
        }
        Row {
            time_instant: PrimitiveDateTime::new(date, time),
            id_entity: state.name.clone(),
            so2: values[SO2],
            no2: values[NO2],
            co: values[CO],
            o3: values[O3],
            pm10: values[PM10],
            pm2_5: values[PM25],
        }
    }
}

impl Iterator for Generator {
    type Item = Row;

    fn next(&mut self) -> Option<Row> {
        if self.stations.is_empty() || self.limit_reached() {
            return None;
        }
        let row = self.measure(self.hour_index, self.station_index);
        self.emitted += 1;
        self.station_index += 1;
        if self.station_index == self.stations.len() {
            self.station_index = 0;
            self.hour_index += 1;
        }
        Some(row)
    }
}

fn write_value(out: &mut impl Write, value: Option<f64>) -> io::Result<()> {
    match value {
        Some(v) => write!(out, ",{v}"),
        None => out.write_all(b","),
    }
}

/// Writes one CSV line in the original format (`2016-10-01 00:00:00.004,aq_salvia,...`).
pub fn write_row(out: &mut impl Write, row: &Row) -> io::Result<()> {
    let t = row.time_instant;
    write!(
        out,
        "{:04}-{:02}-{:02} {:02}:{:02}:{:02}.{:03},{}",
        t.year(),
        t.month() as u8,
        t.day(),
        t.hour(),
        t.minute(),
        t.second(),
        t.millisecond(),
        row.id_entity
    )?;
    for value in [row.so2, row.no2, row.co, row.o3, row.pm10, row.pm2_5] {
        write_value(out, value)?;
    }
    out.write_all(b"\n")
}

/// Writes the header and every row of `options` to `out`.
pub fn write_csv(out: &mut impl Write, options: Options) -> io::Result<u64> {
    writeln!(out, "{HEADER}")?;
    let mut count = 0;
    for row in Generator::new(options) {
        write_row(out, &row)?;
        count += 1;
    }
    Ok(count)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn small() -> Options {
        Options {
            days: 3,
            ..Options::default()
        }
    }

    #[test]
    fn the_same_options_give_the_same_bytes() {
        let (mut a, mut b) = (Vec::new(), Vec::new());
        write_csv(&mut a, small()).unwrap();
        write_csv(&mut b, small()).unwrap();
        assert_eq!(a, b);
        let c = {
            let mut c = Vec::new();
            write_csv(&mut c, Options { seed: 7, ..small() }).unwrap();
            c
        };
        assert_ne!(a, c, "the seed changes the data");
    }

    #[test]
    fn rows_are_hourly_per_station_in_time_order() {
        let rows: Vec<Row> = Generator::new(small()).collect();
        assert_eq!(rows.len(), 6 * 24 * 3);
        assert_eq!(rows[0].id_entity, "aq_salvia");
        assert_eq!(rows[5].id_entity, "aq_cartuja");
        assert_eq!(rows[6].time_instant.hour(), 1);
        assert!(
            rows.windows(2)
                .all(|w| w[0].time_instant.date() <= w[1].time_instant.date())
        );
    }

    #[test]
    fn a_row_limit_stops_exactly_there() {
        let options = Options {
            rows: Some(1_000),
            ..Options::default()
        };
        assert_eq!(Generator::new(options.clone()).count(), 1_000);
        assert_eq!(options.row_count(), 1_000);
    }

    #[test]
    fn traffic_pollution_peaks_at_rush_hour_and_drops_at_weekends() {
        let rows: Vec<Row> = Generator::new(Options::default())
            .filter(|r| r.id_entity == "aq_salvia")
            .collect();
        let mean_no2 = |keep: &dyn Fn(&Row) -> bool| {
            let v: Vec<f64> = rows
                .iter()
                .filter(|r| keep(r))
                .filter_map(|r| r.no2)
                .collect();
            v.iter().sum::<f64>() / v.len() as f64
        };
        let weekday = |r: &Row| {
            !matches!(
                r.time_instant.weekday(),
                Weekday::Saturday | Weekday::Sunday
            )
        };
        let rush = mean_no2(&|r| weekday(r) && r.time_instant.hour() == 8);
        let night = mean_no2(&|r| weekday(r) && r.time_instant.hour() == 3);
        let weekend_rush = mean_no2(&|r| !weekday(r) && r.time_instant.hour() == 8);
        assert!(rush > 1.8 * night, "rush {rush} vs night {night}");
        assert!(
            rush > 1.2 * weekend_rush,
            "weekday {rush} vs weekend {weekend_rush}"
        );
    }

    #[test]
    fn some_readings_are_empty() {
        let rows: Vec<Row> = Generator::new(Options::default()).collect();
        let empty = rows.iter().filter(|r| r.pm2_5.is_none()).count();
        assert!(
            empty > 10 && empty < rows.len() / 10,
            "{empty} empty pm2_5 readings"
        );
    }

    #[test]
    fn stations_have_places_zones_and_the_measurements_names() {
        let stations = stations(30);
        let names: Vec<String> = Generator::new(Options {
            stations: 30,
            rows: Some(30),
            ..Options::default()
        })
        .map(|r| r.id_entity)
        .collect();
        assert_eq!(
            stations
                .iter()
                .map(|s| s.id_entity.clone())
                .collect::<Vec<_>>(),
            names
        );
        assert_eq!(stations[0].name, "Salvia (Granada centre)");
        assert_eq!(stations[2].area, "rural");
        assert!(stations.iter().all(|s| (27.0..39.0).contains(&s.latitude)));
        assert!(
            stations
                .iter()
                .all(|s| (-18.0..-1.0).contains(&s.longitude))
        );
        assert_eq!(stations[19].timezone, "Atlantic/Canary");
        assert_eq!(stations[18].timezone, "Europe/Madrid");
        assert_eq!(
            super::stations(20),
            stations[..20],
            "a station's place depends on its number only"
        );
    }

    #[test]
    fn the_stations_csv_quotes_names_with_commas() {
        let mut out = Vec::new();
        write_stations_csv(&mut out, 2).unwrap();
        let text = String::from_utf8(out).unwrap();
        assert_eq!(text.lines().next(), Some(STATIONS_HEADER));
        assert_eq!(
            text.lines().nth(2),
            Some("aq_jaen,Jaén,37.779,-3.787,574,urban,background,Europe/Madrid")
        );
        assert_eq!(csv_field("a, b"), "\"a, b\"");
    }

    #[test]
    fn csv_lines_have_the_original_format() {
        let mut out = Vec::new();
        write_csv(
            &mut out,
            Options {
                rows: Some(1),
                ..Options::default()
            },
        )
        .unwrap();
        let text = String::from_utf8(out).unwrap();
        let mut lines = text.lines();
        assert_eq!(lines.next(), Some(HEADER));
        let line = lines.next().unwrap();
        assert!(line.starts_with("2016-10-01 00:00:00."), "{line}");
        assert_eq!(line.split(',').count(), 8);
    }
}
