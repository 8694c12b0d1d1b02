//! Reading Prometheus text in assertions.

/// The sum of the samples of `name` whose labels include every pair in `labels`.
/// Histogram series (`_bucket`, `_sum`, `_count`) are separate names.
pub fn sample(text: &str, name: &str, labels: &[(&str, &str)]) -> f64 {
    text.lines()
        .filter(|line| !line.starts_with('#'))
        .filter_map(|line| {
            let (series, value) = line.rsplit_once(' ')?;
            let (series_name, series_labels) = match series.split_once('{') {
                Some((n, rest)) => (n, rest.trim_end_matches('}')),
                None => (series, ""),
            };
            if series_name != name {
                return None;
            }
            let matches = labels.iter().all(|(k, v)| {
                series_labels
                    .split(',')
                    .any(|pair| pair == format!("{k}=\"{v}\""))
            });
            matches.then(|| value.parse::<f64>().ok()).flatten()
        })
        .sum()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sums_matching_series() {
        let text =
            "# TYPE x counter\nx{a=\"1\",b=\"2\"} 3\nx{a=\"1\",b=\"3\"} 4\nx{a=\"2\"} 10\ny 1\n";
        assert_eq!(sample(text, "x", &[("a", "1")]), 7.0);
        assert_eq!(sample(text, "x", &[]), 17.0);
        assert_eq!(sample(text, "y", &[]), 1.0);
        assert_eq!(sample(text, "z", &[]), 0.0);
    }
}
