//! What the readings of one bucket add up to: how many there are, and per
//! pollutant the mean, minimum, maximum and 95th percentile of its non-empty
//! values.

use serde::Serialize;

use crate::measurement::{POLLUTANTS, unit};

/// The readings of one bucket of one station.
#[derive(Debug, Default)]
pub struct Tally {
    /// Rows in the bucket.
    pub rows: u64,
    /// Distinct clock hours (UTC) with a row: the hourly readings present.
    pub hours: u64,
    last_hour: Option<i64>,
    /// Each pollutant's non-empty values, in [`POLLUTANTS`] order.
    values: [Vec<f64>; 6],
}

/// One pollutant's figures over a bucket.
#[derive(Debug, Clone, PartialEq, Serialize, utoipa::ToSchema)]
pub struct Stats {
    pub count: usize,
    pub mean: f64,
    pub min: f64,
    pub max: f64,
    pub p95: f64,
    #[schema(value_type = String, example = "µg/m³")]
    pub unit: &'static str,
}

impl Tally {
    /// Adds the row of the hour `unix_hour` (seconds since the epoch / 3600).
    pub fn add(&mut self, unix_hour: i64, values: [Option<f64>; 6]) {
        self.rows += 1;
        if self.last_hour != Some(unix_hour) {
            self.hours += 1;
            self.last_hour = Some(unix_hour);
        }
        for (kept, value) in self.values.iter_mut().zip(values) {
            kept.extend(value);
        }
    }

    /// Each pollutant's figures, `None` where it has no value.
    pub fn stats(&mut self) -> impl Iterator<Item = (&'static str, Option<Stats>)> + '_ {
        POLLUTANTS
            .iter()
            .zip(self.values.iter_mut())
            .map(|(pollutant, values)| (*pollutant, stats(values, unit(pollutant))))
    }
}

fn stats(values: &mut [f64], unit: &'static str) -> Option<Stats> {
    if values.is_empty() {
        return None;
    }
    values.sort_by(f64::total_cmp);
    let sum: f64 = values.iter().sum();
    Some(Stats {
        count: values.len(),
        mean: round(sum / values.len() as f64),
        min: values[0],
        max: values[values.len() - 1],
        p95: round(percentile(values, 0.95)),
        unit,
    })
}

/// The `p` quantile of sorted values, interpolated linearly between the two
/// nearest ranks (as PostgreSQL's `percentile_cont` and NumPy's default).
pub fn percentile(sorted: &[f64], p: f64) -> f64 {
    let rank = (sorted.len() - 1) as f64 * p;
    let below = rank.floor() as usize;
    let above = (below + 1).min(sorted.len() - 1);
    sorted[below] + (rank - below as f64) * (sorted[above] - sorted[below])
}

/// Four decimals: the precision of the data (CO has four).
pub fn round(value: f64) -> f64 {
    (value * 10_000.0).round() / 10_000.0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_95th_percentile_interpolates_between_ranks() {
        let values: Vec<f64> = (1..=20).map(f64::from).collect();
        // rank 0.95 * 19 = 18.05: between 19 and 20.
        assert!((percentile(&values, 0.95) - 19.05).abs() < 1e-9);
        assert_eq!(percentile(&[7.0], 0.95), 7.0);
        assert_eq!(percentile(&[1.0, 3.0], 0.5), 2.0);
    }

    #[test]
    fn a_tally_counts_rows_hours_and_each_pollutant_apart() {
        let mut tally = Tally::default();
        tally.add(10, [Some(1.0), None, Some(0.2), None, None, None]);
        tally.add(10, [Some(3.0), None, None, None, None, None]);
        tally.add(11, [Some(2.0), Some(40.0), None, None, None, None]);
        assert_eq!((tally.rows, tally.hours), (3, 2));
        let stats: Vec<(&str, Option<Stats>)> = tally.stats().collect();
        let so2 = stats[0].1.clone().unwrap();
        assert_eq!((so2.count, so2.mean, so2.min, so2.max), (3, 2.0, 1.0, 3.0));
        assert_eq!(so2.unit, "µg/m³");
        assert_eq!(stats[2].1.as_ref().unwrap().unit, "mg/m³");
        assert_eq!(stats[1].1.as_ref().unwrap().count, 1);
        assert!(stats[3].1.is_none(), "o3 had no value");
    }
}
