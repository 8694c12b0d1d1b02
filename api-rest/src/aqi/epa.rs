//! The U.S. EPA Air Quality Index (breakpoints: `standards/us-epa-aqi-2024.json`).
//!
//! Each pollutant's concentration is averaged as the EPA reports the current
//! AQI: the NowCast for PM2.5 and PM10, the last 8 hours for O3 and CO (with
//! the 1-hour O3 index where it is higher), the hour itself for NO2 and SO2
//! (the 24-hour mean above 304 ppb). Gases are converted from µg/m³ (CO
//! mg/m³) to the table's ppm or ppb; the concentration is truncated, the
//! index interpolated and rounded.

use std::sync::LazyLock;

use serde::Deserialize;

use super::{CO, Hours, NO2, O3, PM10, PM25, SO2, SubIndex};

static TABLE: LazyLock<Table> = LazyLock::new(|| {
    serde_json::from_str(include_str!("../../standards/us-epa-aqi-2024.json"))
        .unwrap_or_else(|error| panic!("standards/us-epa-aqi-2024.json: {error}"))
});

#[derive(Debug, Deserialize)]
struct Table {
    version: String,
    conversion: Conversion,
    categories: Vec<Category>,
    breakpoints: Breakpoints,
}

#[derive(Debug, Deserialize)]
struct Conversion {
    molar_volume_l: f64,
    molecular_weight: MolecularWeights,
}

#[derive(Debug, Deserialize)]
struct MolecularWeights {
    o3: f64,
    no2: f64,
    so2: f64,
    co: f64,
}

#[derive(Debug, Deserialize)]
pub(super) struct Category {
    pub(super) name: String,
    pub(super) color: String,
    low: u32,
    high: u32,
}

#[derive(Debug, Deserialize)]
struct Breakpoints {
    pm2_5_24h: Scale,
    pm10_24h: Scale,
    o3_8h: Scale,
    o3_1h: Scale,
    co_8h: Scale,
    so2_1h: Scale,
    so2_24h: Scale,
    no2_1h: Scale,
}

/// One pollutant's breakpoints: rows of `[c_low, c_high, i_low, i_high]`.
#[derive(Debug, Deserialize)]
struct Scale {
    unit: String,
    truncate_decimals: i32,
    rows: Vec<[f64; 4]>,
}

impl Scale {
    /// The concentration as the equation takes it: truncated.
    fn truncate(&self, concentration: f64) -> f64 {
        let factor = 10f64.powi(self.truncate_decimals);
        // The epsilon keeps 35.9 (35.899999…) from becoming 35.8.
        ((concentration.max(0.0) * factor) + 1e-9).floor() / factor
    }

    /// The AQI equation (TAD, section IV); `None` below the first row (the
    /// 1-hour O3 and 24-hour SO2 scales start high). Above the last row the
    /// index is the top of the scale, 500.
    fn index(&self, concentration: f64) -> Option<u32> {
        let c = self.truncate(concentration);
        let first = self.rows.first()?;
        let last = self.rows.last()?;
        if c < first[0] {
            return None;
        }
        if c > last[1] {
            return Some(500);
        }
        let row = self.rows.iter().rev().find(|row| c >= row[0])?;
        let [c_low, c_high, i_low, i_high] = *row;
        let index = (i_high - i_low) / (c_high - c_low) * (c.min(c_high) - c_low) + i_low;
        Some(index.round() as u32)
    }
}

/// The table's version, for the answers.
pub(super) fn version() -> &'static str {
    &TABLE.version
}

/// The category of an index value.
pub(super) fn category(index: u32) -> Option<&'static Category> {
    TABLE
        .categories
        .iter()
        .find(|c| index >= c.low && index <= c.high)
        .or(TABLE.categories.last())
}

/// µg/m³ (mg/m³ for CO) to ppb (ppm for CO) at 25 °C and 1 atm.
fn to_mixing_ratio(concentration: f64, molecular_weight: f64) -> f64 {
    concentration * TABLE.conversion.molar_volume_l / molecular_weight
}

/// EPA's NowCast of hourly values, newest first (TAD, "How the NowCast is
/// calculated"): a weighted mean of the last 12 hours whose weights fall off
/// faster the more the hours differ. `None` unless 2 of the 3 newest hours
/// have a value.
pub fn nowcast(newest_first: &[Option<f64>]) -> Option<f64> {
    let recent = newest_first.iter().take(3).flatten().count();
    if recent < 2 {
        return None;
    }
    let present: Vec<(i32, f64)> = newest_first
        .iter()
        .take(12)
        .zip(0..)
        .filter_map(|(value, hours_ago)| value.map(|v| (hours_ago, v)))
        .collect();
    let max = present.iter().map(|(_, v)| *v).fold(f64::MIN, f64::max);
    let min = present.iter().map(|(_, v)| *v).fold(f64::MAX, f64::min);
    let weight = if max > 0.0 {
        (1.0 - (max - min) / max).max(0.5)
    } else {
        1.0
    };
    let (sum, weights) = present.iter().fold((0.0, 0.0), |(sum, weights), (ago, v)| {
        let w = weight.powi(*ago);
        (sum + w * v, weights + w)
    });
    Some(sum / weights)
}

/// Each pollutant's sub-index from a station's last 24 hours.
pub(super) fn sub_indices(hours: &Hours) -> Vec<SubIndex> {
    let weights = &TABLE.conversion.molecular_weight;
    let b = &TABLE.breakpoints;
    let mut out = Vec::new();
    let mut push = |pollutant: &'static str,
                    concentration: f64,
                    scale: &Scale,
                    averaging: &'static str,
                    index: Option<u32>| {
        if let Some(index) = index {
            out.push(SubIndex {
                pollutant,
                concentration: scale.truncate(concentration),
                unit: scale.unit.clone(),
                averaging,
                index,
                category: None,
            });
        }
    };
    for (pollutant, column, scale) in [("pm2_5", PM25, &b.pm2_5_24h), ("pm10", PM10, &b.pm10_24h)] {
        if let Some(c) = nowcast(&hours.newest_first(column, 12)) {
            push(pollutant, c, scale, "nowcast", scale.index(c));
        }
    }
    // O3: the 8-hour index up to 0.200 ppm, the 1-hour one from 0.125 ppm;
    // the higher counts.
    let o3_8h = hours
        .mean(O3, 8, 6)
        .map(|c| to_mixing_ratio(c, weights.o3) / 1000.0);
    let o3_1h = hours
        .at(O3, 0)
        .map(|c| to_mixing_ratio(c, weights.o3) / 1000.0);
    let from_8h = o3_8h
        .filter(|c| b.o3_8h.truncate(*c) <= 0.200)
        .and_then(|c| Some((c, b.o3_8h.index(c)?)));
    let from_1h = o3_1h.and_then(|c| Some((c, b.o3_1h.index(c)?)));
    match (from_8h, from_1h) {
        (Some((_, i8)), Some((c1, i1))) if i1 > i8 => push("o3", c1, &b.o3_1h, "1h", Some(i1)),
        (Some((c8, i8)), _) => push("o3", c8, &b.o3_8h, "8h", Some(i8)),
        (None, Some((c1, i1))) => push("o3", c1, &b.o3_1h, "1h", Some(i1)),
        (None, None) => {}
    }
    if let Some(c) = hours.mean(CO, 8, 6).map(|c| to_mixing_ratio(c, weights.co)) {
        push("co", c, &b.co_8h, "8h", b.co_8h.index(c));
    }
    // SO2: the hour up to 304 ppb; above, the 24-hour mean, or 200 when that
    // mean is under 305 ppb (TAD, "Calculating AQI values for SO2").
    if let Some(c1) = hours.at(SO2, 0).map(|c| to_mixing_ratio(c, weights.so2)) {
        if b.so2_1h.truncate(c1) <= 304.0 {
            push("so2", c1, &b.so2_1h, "1h", b.so2_1h.index(c1));
        } else if let Some(c24) = hours
            .mean(SO2, 24, 18)
            .map(|c| to_mixing_ratio(c, weights.so2))
        {
            let index = b.so2_24h.index(c24).unwrap_or(200);
            push("so2", c24, &b.so2_24h, "24h", Some(index));
        }
    }
    if let Some(c) = hours.at(NO2, 0).map(|c| to_mixing_ratio(c, weights.no2)) {
        push("no2", c, &b.no2_1h, "1h", b.no2_1h.index(c));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_tads_examples_give_its_indices() {
        // TAD (EPA-454/B-24-002), "Using the table and the equation": 8-hour
        // ozone 0.078 ppm, PM2.5 35.9 µg/m³ and CO 8.4 ppm.
        assert_eq!(TABLE.breakpoints.o3_8h.index(0.07853), Some(126));
        assert_eq!(TABLE.breakpoints.pm2_5_24h.index(35.9), Some(102));
        assert_eq!(TABLE.breakpoints.co_8h.index(8.4), Some(90));
    }

    #[test]
    fn the_2024_pm25_breakpoints_are_in_force() {
        let pm = &TABLE.breakpoints.pm2_5_24h;
        assert_eq!(pm.index(9.0), Some(50));
        assert_eq!(pm.index(9.1), Some(51));
        assert_eq!(pm.index(12.0), Some(56), "was 50 before 2024");
        assert_eq!(pm.index(325.4), Some(500));
        assert_eq!(pm.index(900.0), Some(500), "beyond the AQI");
        assert_eq!(category(51).map(|c| c.name.as_str()), Some("Moderate"));
        assert_eq!(version(), "2024-05-06");
    }

    #[test]
    fn the_nowcast_matches_epas_worked_example() {
        // EPA's "Computing the NowCast": hourly PM2.5, oldest to newest
        // 50 80 75 90 82 53 64 74 21 10 16 13 → 17.4 µg/m³.
        let newest_first: Vec<Option<f64>> = [13, 16, 10, 21, 74, 64, 53, 82, 90, 75, 80, 50]
            .iter()
            .map(|v| Some(f64::from(*v)))
            .collect();
        let example = nowcast(&newest_first).unwrap();
        assert_eq!(TABLE.breakpoints.pm2_5_24h.truncate(example), 17.4);
        // Steady air: the plain mean.
        assert_eq!(nowcast(&[Some(8.0); 12]), Some(8.0));
        // Two of the three newest hours are needed.
        assert_eq!(nowcast(&[Some(8.0), None, None, Some(8.0)]), None);
    }

    #[test]
    fn every_scale_rises_without_gaps_or_overlaps() {
        let b = &TABLE.breakpoints;
        for scale in [
            &b.pm2_5_24h,
            &b.pm10_24h,
            &b.o3_8h,
            &b.o3_1h,
            &b.co_8h,
            &b.so2_1h,
            &b.so2_24h,
            &b.no2_1h,
        ] {
            let step = 10f64.powi(-scale.truncate_decimals);
            for pair in scale.rows.windows(2) {
                assert!(
                    (pair[1][0] - pair[0][1] - step).abs() < 1e-9,
                    "{:?}",
                    scale.rows
                );
                assert_eq!(pair[1][2], pair[0][3] + 1.0);
            }
        }
    }

    #[test]
    fn gases_are_converted_to_the_tables_units() {
        // 100 µg/m³ of NO2 is 53.1 ppb: the top of "Good".
        assert_eq!(
            TABLE
                .breakpoints
                .no2_1h
                .index(to_mixing_ratio(100.0, 46.01)),
            Some(50)
        );
    }
}
