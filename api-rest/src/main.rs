//! api-rest: reads the configuration, starts the server, stops on SIGTERM.

use std::process::ExitCode;

use api_rest::{Application, Config};
use service_kit::{RuntimeConfig, healthcheck, lifecycle, telemetry};

fn main() -> ExitCode {
    if let Some(code) =
        healthcheck::run_if_requested("API_REST_ADMIN_PORT", api_rest::config::DEFAULT_ADMIN_PORT)
    {
        return code;
    }
    let (config, runtime) =
        match Config::from_env().and_then(|c| Ok((c, RuntimeConfig::from_env()?))) {
            Ok(loaded) => loaded,
            Err(error) => {
                eprintln!("api-rest: {error}");
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
            tracing::error!(%error, "api-rest cannot start");
            return ExitCode::FAILURE;
        }
    };
    tracing::info!(port = app.port(), "api-rest listening");
    match app.run_until_stopped(shutdown).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            tracing::error!(%error, "api-rest stopped with an error");
            ExitCode::FAILURE
        }
    }
}
