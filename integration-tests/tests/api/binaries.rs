//! The real executables: start-up errors, the healthcheck subcommand, SIGTERM.

use std::process::{Command, Stdio};
use std::time::Duration;

use integration_tests::process::{KillOnDrop, free_port, wait_for_port};
use integration_tests::{RedisServer, binary};

/// Runs a binary with only these variables set.
fn run(name: &str, vars: &[(&str, &str)], args: &[&str]) -> std::process::Output {
    Command::new(binary(name))
        .args(args)
        .env_clear()
        .envs(vars.iter().copied())
        .output()
        .unwrap()
}

#[test]
fn a_missing_password_stops_api_rest_with_one_line_naming_it() {
    let output = run("api-rest", &[], &[]);
    assert_eq!(output.status.code(), Some(2));
    let stderr = String::from_utf8(output.stderr).unwrap();
    assert_eq!(stderr.lines().count(), 1, "{stderr}");
    assert!(stderr.contains("POSTGRES_API_PASSWORD"), "{stderr}");
}

#[test]
fn a_malformed_variable_stops_each_binary_with_one_line_naming_it() {
    for (name, vars, variable) in [
        (
            "api-cache",
            vec![("CACHE_TTL_SECONDS", "soon")],
            "CACHE_TTL_SECONDS",
        ),
        ("api-cache", vec![("LOG_FORMAT", "xml")], "LOG_FORMAT"),
        (
            "api-rest",
            vec![("POSTGRES_API_PASSWORD", "x"), ("POSTGRES_PORT", "5432x")],
            "POSTGRES_PORT",
        ),
    ] {
        let output = run(name, &vars, &[]);
        assert_eq!(output.status.code(), Some(2), "{name} {variable}");
        let stderr = String::from_utf8(output.stderr).unwrap();
        assert_eq!(stderr.lines().count(), 1, "{stderr}");
        assert!(stderr.contains(variable), "{stderr}");
    }
}

#[test]
fn the_healthcheck_subcommand_probes_the_local_service_and_sigterm_stops_it() {
    let port = free_port();
    let port_text = port.to_string();
    let admin_port = free_port().to_string();
    let redis_port = RedisServer::shared().port().to_string();
    let mut server = KillOnDrop(
        Command::new(binary("api-cache"))
            .env_clear()
            .envs([
                ("API_CACHE_PORT", port_text.as_str()),
                ("API_CACHE_ADMIN_PORT", admin_port.as_str()),
                ("REDIS_HOST", "127.0.0.1"),
                ("REDIS_PORT", redis_port.as_str()),
                ("BACKEND_HOST", "127.0.0.1"),
                ("BIND_ADDRESS", "127.0.0.1"),
            ])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
    );
    assert!(wait_for_port(port, Duration::from_secs(10)));
    let healthy = run(
        "api-cache",
        &[("API_CACHE_PORT", &port_text)],
        &["healthcheck"],
    );
    assert!(
        healthy.status.success(),
        "{}",
        String::from_utf8_lossy(&healthy.stderr)
    );

    Command::new("kill")
        .args(["-TERM", &server.0.id().to_string()])
        .status()
        .unwrap();
    let status = server.0.wait().unwrap();
    assert!(status.success(), "SIGTERM is a clean stop, got {status}");

    let unhealthy = run(
        "api-cache",
        &[("API_CACHE_PORT", &port_text)],
        &["healthcheck"],
    );
    assert_eq!(unhealthy.status.code(), Some(1));
}

#[tokio::test]
async fn api_rests_healthcheck_probes_its_admin_port_where_liveness_lives() {
    let db = integration_tests::PostgresServer::shared().create_database();
    let rest = integration_tests::apps::spawn_rest(db.rest_env()).await;
    let probe = |port: u16| {
        let port = port.to_string();
        tokio::task::spawn_blocking(move || {
            run(
                "api-rest",
                &[("API_REST_ADMIN_PORT", &port)],
                &["healthcheck"],
            )
            .status
            .success()
        })
    };
    assert!(probe(rest.admin_port).await.unwrap(), "admin port");
    assert!(
        !probe(rest.port).await.unwrap(),
        "the public port has no /healthz: nothing of the operators' reaches the cache"
    );
}
