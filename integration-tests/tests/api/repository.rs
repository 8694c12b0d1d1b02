//! The repository stays in step with the code: documented variables, the env
//! file, and the committed data.

use std::collections::BTreeSet;

use integration_tests::repo_root;
use service_kit::config::variable_names;

/// Every variable the two binaries read.
pub(crate) fn variables_read_by(service: &str) -> BTreeSet<String> {
    let mut names: BTreeSet<String> = variable_names::<service_kit::RuntimeConfig>()
        .into_iter()
        .collect();
    names.insert("RUST_LOG".into());
    match service {
        "api-rest" => names.extend(variable_names::<api_rest::Config>()),
        "api-cache" => names.extend(variable_names::<api_cache::Config>()),
        other => panic!("no service {other}"),
    }
    names
}

/// The variables `service` reads that `given` lacks.
pub(crate) fn variables_missing_from(service: &str, given: &BTreeSet<String>) -> Vec<String> {
    variables_read_by(service)
        .difference(given)
        .cloned()
        .collect()
}

fn read(path: &str) -> String {
    std::fs::read_to_string(repo_root().join(path)).unwrap_or_else(|e| panic!("{path}: {e}"))
}

/// `NAME=value` lines of an env file.
pub(crate) fn env_file_variables() -> BTreeSet<String> {
    read("environment.env")
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .filter_map(|l| l.split_once('=').map(|(k, _)| k.to_owned()))
        .collect()
}

#[test]
fn the_config_reader_knows_the_variables_of_both_services() {
    let rest = variables_read_by("api-rest");
    assert!(
        rest.contains("POSTGRES_API_PASSWORD") && rest.contains("API_REST_PORT"),
        "{rest:?}"
    );
    let cache = variables_read_by("api-cache");
    assert!(
        cache.contains("CACHE_TTL_SECONDS") && cache.contains("BACKEND_HOST"),
        "{cache:?}"
    );
}

#[test]
fn every_variable_the_binaries_read_is_in_environment_env() {
    let in_file = env_file_variables();
    for service in ["api-rest", "api-cache"] {
        let missing = variables_missing_from(service, &in_file);
        assert!(
            missing.is_empty(),
            "{service} reads {missing:?}, missing from environment.env"
        );
    }
}

#[test]
fn environment_env_holds_no_variable_nobody_reads() {
    let mut read: BTreeSet<String> = variables_read_by("api-rest");
    read.extend(variables_read_by("api-cache"));
    // Read by the postgres image (and the init script) rather than by our binaries.
    read.extend(["POSTGRES_USER".to_owned(), "POSTGRES_PASSWORD".to_owned()]);
    // Read by Grafana (the compose monitoring profile).
    read.insert("GRAFANA_ADMIN_PASSWORD".to_owned());
    let unknown: Vec<_> = env_file_variables().difference(&read).cloned().collect();
    assert!(
        unknown.is_empty(),
        "environment.env sets {unknown:?}, which nothing reads (a typo?)"
    );
}

#[test]
fn environment_env_commits_no_password() {
    for line in read("environment.env")
        .lines()
        .filter(|l| !l.starts_with('#'))
    {
        if let Some((name, value)) = line.split_once('=')
            && (name.contains("PASSWORD") || name.contains("TOKEN"))
        {
            assert!(
                value.is_empty(),
                "{name} has a value in the committed environment.env"
            );
        }
    }
}

#[test]
fn every_variable_the_binaries_read_is_documented_in_the_readme() {
    let readme = read("README.md");
    for service in ["api-rest", "api-cache"] {
        for name in variables_read_by(service) {
            assert!(
                readme.contains(&format!("| `{name}` |")),
                "{name} ({service}) is not in the README's table"
            );
        }
    }
}

#[test]
fn the_committed_stations_are_exactly_the_generator_output_for_the_committed_data() {
    let committed = std::fs::read(repo_root().join("postgres/stations.csv")).unwrap();
    let mut generated = Vec::new();
    datagen::write_stations_csv(&mut generated, datagen::Options::default().stations).unwrap();
    assert!(
        committed == generated,
        "postgres/stations.csv differs from `cargo run -p datagen -- stations`"
    );
}

#[test]
fn the_committed_csv_is_exactly_the_generator_output_and_fits_a_config_map() {
    let committed = std::fs::read(repo_root().join("postgres/air_quality.csv")).unwrap();
    let mut generated = Vec::new();
    let rows = datagen::write_csv(&mut generated, datagen::Options::default()).unwrap();
    assert!(
        committed == generated,
        "postgres/air_quality.csv differs from `cargo run -p datagen`"
    );
    assert!(
        committed.len() < 1024 * 1024,
        "{} bytes: too big for a ConfigMap",
        committed.len()
    );
    let text = String::from_utf8(committed).unwrap();
    assert!(text.starts_with("TimeInstant,id_entity,so2,no2,co,o3,pm10,pm2_5\n"));
    let stations: BTreeSet<&str> = text
        .lines()
        .skip(1)
        .map(|l| l.split(',').nth(1).unwrap())
        .collect();
    assert!(
        stations.len() >= 6
            && stations.contains("aq_salvia")
            && stations.contains("aq_jaen")
            && stations.contains("aq_nevero")
    );
    let days: BTreeSet<&str> = text.lines().skip(1).map(|l| &l[..10]).collect();
    assert!(days.len() >= 60, "{} days", days.len());
    assert_eq!(rows as usize, text.lines().count() - 1);
    assert!(text.contains(",,"), "some readings are empty");
}
