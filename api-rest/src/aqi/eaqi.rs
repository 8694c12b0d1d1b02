//! The European Air Quality Index (bands: `standards/eea-eaqi-2021.json`).
//!
//! Six levels, from Good to Extremely poor. NO2, O3 and SO2 are read at the
//! reference hour; PM2.5 and PM10 as the running mean of the last 24 hours.
//! A pollutant's sub-index is its level; the station's index is the worst.

use std::sync::LazyLock;

use serde::Deserialize;

use super::{Hours, NO2, O3, PM10, PM25, SO2, SubIndex};

static TABLE: LazyLock<Table> = LazyLock::new(|| {
    serde_json::from_str(include_str!("../../standards/eea-eaqi-2021.json"))
        .unwrap_or_else(|error| panic!("standards/eea-eaqi-2021.json: {error}"))
});

#[derive(Debug, Deserialize)]
struct Table {
    version: String,
    levels: Vec<Level>,
    bands: Bands,
    required: Required,
}

#[derive(Debug, Deserialize)]
pub(super) struct Level {
    level: u32,
    pub(super) name: String,
    pub(super) color: String,
}

#[derive(Debug, Deserialize)]
struct Bands {
    pm2_5: Band,
    pm10: Band,
    no2: Band,
    o3: Band,
    so2: Band,
}

#[derive(Debug, Deserialize)]
struct Band {
    upper_bounds: Vec<f64>,
}

impl Band {
    /// The first level whose upper bound `value` does not exceed; the last
    /// level above every bound.
    fn level(&self, value: f64) -> u32 {
        let position = self
            .upper_bounds
            .iter()
            .position(|bound| value <= *bound)
            .unwrap_or(self.upper_bounds.len() - 1);
        u32::try_from(position).unwrap_or(0) + 1
    }
}

/// Per station type, the groups of pollutants of which one each must be present.
#[derive(Debug, Deserialize)]
struct Required {
    traffic: Vec<Vec<String>>,
    other: Vec<Vec<String>>,
}

pub(super) fn version() -> &'static str {
    &TABLE.version
}

pub(super) fn level(index: u32) -> Option<&'static Level> {
    TABLE.levels.iter().find(|l| l.level == index)
}

/// Each pollutant's level from a station's last 24 hours.
pub(super) fn sub_indices(hours: &Hours) -> Vec<SubIndex> {
    let b = &TABLE.bands;
    let readings = [
        ("pm2_5", hours.mean(PM25, 24, 18), &b.pm2_5, "24h"),
        ("pm10", hours.mean(PM10, 24, 18), &b.pm10, "24h"),
        ("no2", hours.at(NO2, 0), &b.no2, "1h"),
        ("o3", hours.at(O3, 0), &b.o3, "1h"),
        ("so2", hours.at(SO2, 0), &b.so2, "1h"),
    ];
    readings
        .into_iter()
        .filter_map(|(pollutant, value, band, averaging)| {
            let value = value?;
            Some(SubIndex {
                pollutant,
                concentration: (value * 10.0).round() / 10.0,
                unit: "µg/m³".into(),
                averaging,
                index: band.level(value),
                category: None,
            })
        })
        .collect()
}

/// Whether the pollutants present suffice for an index at a station of
/// `station_type`; `Err` names what is missing.
pub(super) fn enough(station_type: &str, present: &[SubIndex]) -> Result<(), String> {
    let groups = if station_type == "traffic" {
        &TABLE.required.traffic
    } else {
        &TABLE.required.other
    };
    let missing: Vec<String> = groups
        .iter()
        .filter(|group| {
            !group
                .iter()
                .any(|p| present.iter().any(|s| s.pollutant == p))
        })
        .map(|group| group.join(" or "))
        .collect();
    if missing.is_empty() {
        Ok(())
    } else {
        Err(format!(
            "needs {} for a {station_type} station",
            missing.join(", ")
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn values_fall_in_the_published_bands_upper_bounds_included() {
        let b = &TABLE.bands;
        assert_eq!(b.pm2_5.level(10.0), 1);
        assert_eq!(b.pm2_5.level(10.1), 2);
        assert_eq!(b.pm2_5.level(75.0), 5);
        assert_eq!(b.pm10.level(45.0), 3);
        assert_eq!(b.no2.level(230.0), 4);
        assert_eq!(b.o3.level(381.0), 6);
        assert_eq!(b.so2.level(5000.0), 6, "beyond the table: the last level");
        assert_eq!(level(4).map(|l| l.name.as_str()), Some("Poor"));
        assert_eq!(level(1).map(|l| l.color.as_str()), Some("#50F0E6"));
        assert_eq!(version(), "2021");
    }

    #[test]
    fn every_band_has_six_rising_bounds() {
        let b = &TABLE.bands;
        for band in [&b.pm2_5, &b.pm10, &b.no2, &b.o3, &b.so2] {
            assert_eq!(band.upper_bounds.len(), TABLE.levels.len());
            assert!(band.upper_bounds.windows(2).all(|w| w[0] < w[1]));
        }
    }

    #[test]
    fn a_traffic_station_needs_no2_and_a_pm_others_ozone_too() {
        let sub = |pollutant| SubIndex {
            pollutant,
            concentration: 1.0,
            unit: "µg/m³".into(),
            averaging: "1h",
            index: 1,
            category: None,
        };
        let present = [sub("no2"), sub("pm10")];
        assert!(enough("traffic", &present).is_ok());
        assert_eq!(
            enough("background", &present),
            Err("needs o3 for a background station".into())
        );
    }
}
