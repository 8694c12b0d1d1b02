//! api-cache: reads the configuration, starts the server, stops on SIGTERM.

use std::process::ExitCode;

use api_cache::{Application, Config};
use service_kit::{RuntimeConfig, healthcheck, lifecycle, telemetry};

fn main() -> ExitCode {
    if let Some(code) =
        healthcheck::run_if_requested("API_CACHE_PORT", api_cache::config::DEFAULT_PORT)
    {
        return code;
    }
    let (config, runtime) =
        match Config::from_env().and_then(|c| Ok((c, RuntimeConfig::from_env()?))) {
            Ok(loaded) => loaded,
            Err(error) => {
                eprintln!("api-cache: {error}");
                return ExitCode::from(2);
            }
        };
    let _logs = telemetry::init_tracing(&runtime.log_format);
    lifecycle::run(serve(config, runtime))
}

async fn serve(config: Config, runtime: RuntimeConfig) -> ExitCode {
    // Before the port opens: a signal during start-up is then a clean stop.
    let shutdown = lifecycle::shutdown_signal();
    let app = match Application::build(config, runtime).await {
        Ok(app) => app,
        Err(error) => {
            tracing::error!(%error, "api-cache cannot start");
            return ExitCode::FAILURE;
        }
    };
    tracing::info!(port = app.port(), "api-cache listening");
    match app.run_until_stopped(shutdown).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            tracing::error!(%error, "api-cache stopped with an error");
            ExitCode::FAILURE
        }
    }
}
