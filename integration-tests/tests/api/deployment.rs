//! docker-compose.yml, kubernetes/ and the Dockerfile stay consistent with the
//! code, and the init script works from the files they mount. (Schema
//! validation of the manifests runs in scripts/check-deploy.sh.)

use std::collections::{BTreeMap, BTreeSet};
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;

use integration_tests::process::{KillOnDrop, free_port, wait_for_port};
use integration_tests::{PostgresServer, binary, repo_root};
use yaml_rust2::{Yaml, YamlLoader};

use crate::repository::{env_file_variables, variables_missing_from};

fn read(path: &str) -> String {
    std::fs::read_to_string(repo_root().join(path)).unwrap_or_else(|e| panic!("{path}: {e}"))
}

fn yaml_documents(path: &str) -> Vec<Yaml> {
    YamlLoader::load_from_str(&read(path)).unwrap_or_else(|e| panic!("{path}: {e}"))
}

fn str_of(yaml: &Yaml) -> &str {
    yaml.as_str().unwrap_or_default()
}

/// Every object of every manifest applied by `kubectl apply -f kubernetes/`.
fn manifests() -> Vec<(String, Yaml)> {
    let mut files: Vec<_> = std::fs::read_dir(repo_root().join("kubernetes"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.is_file())
        .collect();
    files.sort();
    files
        .iter()
        .flat_map(|path| {
            let name = path.file_name().unwrap().to_string_lossy().into_owned();
            let relative = format!("kubernetes/{name}");
            yaml_documents(&relative)
                .into_iter()
                .map(move |doc| (name.clone(), doc))
        })
        .collect()
}

fn object<'a>(objects: &'a [(String, Yaml)], kind: &str, name: &str) -> &'a Yaml {
    objects
        .iter()
        .map(|(_, o)| o)
        .find(|o| str_of(&o["kind"]) == kind && str_of(&o["metadata"]["name"]) == name)
        .unwrap_or_else(|| panic!("no {kind} {name} in kubernetes/"))
}

fn container<'a>(workload: &'a Yaml, name: &str) -> &'a Yaml {
    workload["spec"]["template"]["spec"]["containers"]
        .as_vec()
        .unwrap()
        .iter()
        .find(|c| str_of(&c["name"]) == name)
        .unwrap_or_else(|| panic!("no container {name}"))
}

fn container_env_names(container: &Yaml) -> BTreeSet<String> {
    container["env"]
        .as_vec()
        .map(|env| env.iter().map(|e| str_of(&e["name"]).to_owned()).collect())
        .unwrap_or_default()
}

fn compose() -> Yaml {
    yaml_documents("docker-compose.yml").remove(0)
}

fn compose_env_names(service: &str) -> BTreeSet<String> {
    let compose = compose();
    let env = &compose["services"][service]["environment"];
    env.as_hash()
        .unwrap_or_else(|| panic!("compose service {service} has no environment map"))
        .keys()
        .map(|k| str_of(k).to_owned())
        .collect()
}

#[test]
fn only_manifests_kubectl_apply_accepts_are_in_the_kubernetes_folder() {
    for entry in std::fs::read_dir(repo_root().join("kubernetes")).unwrap() {
        let path = entry.unwrap().path();
        if path.is_file() {
            let name = path.file_name().unwrap().to_string_lossy().into_owned();
            assert!(
                name.ends_with(".yaml"),
                "kubectl apply -f kubernetes/ would read {name}"
            );
            assert_ne!(name, "kustomization.yaml");
        }
    }
    for (file, object) in manifests() {
        assert!(
            !str_of(&object["apiVersion"]).is_empty(),
            "{file}: an object without apiVersion"
        );
        assert!(
            !str_of(&object["kind"]).is_empty(),
            "{file}: an object without kind"
        );
    }
}

#[test]
fn every_variable_a_binary_reads_is_given_by_compose() {
    for service in ["api-rest", "api-cache"] {
        let missing = variables_missing_from(service, &compose_env_names(service));
        assert!(
            missing.is_empty(),
            "compose service {service} does not set {missing:?}"
        );
    }
}

#[test]
fn every_variable_a_binary_reads_is_given_by_its_kubernetes_deployment() {
    let objects = manifests();
    for service in ["api-rest", "api-cache"] {
        let deployment = object(&objects, "Deployment", service);
        let given = container_env_names(container(deployment, service));
        let missing = variables_missing_from(service, &given);
        assert!(
            missing.is_empty(),
            "the {service} Deployment does not set {missing:?}"
        );
    }
}

#[test]
fn every_secret_key_the_manifests_read_is_in_environment_env() {
    let in_file = env_file_variables();
    let mut keys = BTreeSet::new();
    fn collect(yaml: &Yaml, keys: &mut BTreeSet<String>) {
        match yaml {
            Yaml::Hash(hash) => {
                if let Some(reference) = hash.get(&Yaml::String("secretKeyRef".into())) {
                    assert_eq!(str_of(&reference["name"]), "credentials");
                    keys.insert(str_of(&reference["key"]).to_owned());
                }
                hash.values().for_each(|v| collect(v, keys));
            }
            Yaml::Array(items) => items.iter().for_each(|v| collect(v, keys)),
            _ => {}
        }
    }
    for (_, object) in manifests() {
        collect(&object, &mut keys);
    }
    let missing: Vec<_> = keys.difference(&in_file).cloned().collect();
    assert!(
        missing.is_empty(),
        "the Secret from environment.env would lack {missing:?}"
    );
}

#[test]
fn every_variable_compose_interpolates_is_in_environment_env() {
    let text = read("docker-compose.yml");
    let in_file = env_file_variables();
    let mut missing = BTreeSet::new();
    for piece in text.split("${").skip(1) {
        let name: String = piece
            .chars()
            .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
            .collect();
        // Image naming is for whoever builds, not for the services.
        if !name.starts_with("IMAGE_") && !in_file.contains(&name) {
            missing.insert(name);
        }
    }
    assert!(
        missing.is_empty(),
        "docker-compose.yml reads {missing:?}, absent from environment.env"
    );
}

#[test]
fn compose_refuses_to_start_while_a_password_is_empty() {
    let text = read("docker-compose.yml");
    for password in [
        "POSTGRES_PASSWORD",
        "POSTGRES_API_PASSWORD",
        "REDIS_PASSWORD",
    ] {
        assert!(
            text.contains(&format!("${{{password}:?")),
            "{password} is not required by compose"
        );
        assert!(
            !text.contains(&format!("${{{password}:-")),
            "{password} has a default in compose"
        );
    }
}

#[test]
fn compose_publishes_only_api_cache_and_waits_for_healthy_dependencies() {
    let compose = compose();
    let services = compose["services"].as_hash().unwrap();
    for (name, service) in services {
        let name = str_of(name);
        let published = !service["ports"].is_badvalue();
        // Services of a profile (monitoring) run only when asked for.
        let by_default = service["profiles"].is_badvalue();
        if by_default {
            assert_eq!(published, name == "api-cache", "{name} publishes ports");
        }
        assert!(
            !service["healthcheck"].is_badvalue(),
            "{name} has no healthcheck"
        );
        assert!(
            !service["restart"].is_badvalue(),
            "{name} has no restart policy"
        );
        if let Some(depends) = service["depends_on"].as_hash() {
            for (dependency, condition) in depends {
                assert_eq!(
                    str_of(&condition["condition"]),
                    "service_healthy",
                    "{name} -> {}",
                    str_of(dependency)
                );
            }
        }
    }
    assert_eq!(
        str_of(&compose["services"]["api-cache"]["ports"][0]),
        "8080:8080"
    );
    assert_eq!(
        str_of(&compose["services"]["api-cache"]["ports"][1]),
        "127.0.0.1:9090:9090",
        "the admin port is published on the host's loopback only"
    );
    assert!(compose["services"]["api-cache"]["ports"][2].is_badvalue());
}

#[test]
fn images_are_built_from_dockerfile_targets_that_exist() {
    let dockerfile = read("Dockerfile");
    let stages: BTreeSet<&str> = dockerfile
        .lines()
        .filter(|l| l.starts_with("FROM "))
        .filter_map(|l| l.split(" AS ").nth(1).map(str::trim))
        .collect();
    let compose = compose();
    for service in ["api-rest", "api-cache"] {
        assert!(stages.contains(service), "no Dockerfile stage {service}");
        assert_eq!(
            str_of(&compose["services"][service]["build"]["target"]),
            service
        );
        let image = str_of(&compose["services"][service]["image"]);
        assert!(
            image.ends_with(&format!("/{service}:${{IMAGE_TAG:-latest}}")),
            "{image}"
        );
        let objects = manifests();
        let k8s_image =
            str_of(&container(object(&objects, "Deployment", service), service)["image"])
                .to_owned();
        assert_eq!(
            k8s_image,
            format!("air-quality-api/{service}:latest"),
            "compose and Kubernetes name images alike"
        );
        // The stage runs as non-root and checks its own health.
        let stage = dockerfile
            .split(&format!(" AS {service}\n"))
            .nth(1)
            .unwrap();
        let stage = stage.split("\nFROM ").next().unwrap();
        assert!(
            stage.contains(&format!(
                "CMD [\"/usr/local/bin/{service}\", \"healthcheck\"]"
            )),
            "{service}"
        );
        assert!(
            stage.contains(&format!("ENTRYPOINT [\"/usr/local/bin/{service}\"]")),
            "{service}"
        );
    }
    assert!(dockerfile.contains("USER 65532:65532"));
    let ignored = read(".dockerignore");
    assert!(
        ignored.lines().any(|l| l.trim() == "target/"),
        ".dockerignore keeps target/ out"
    );
}

/// Whether `.dockerignore` keeps `path` out of the build context: the last
/// pattern that matches decides (`dir/`, `dir/*`, `*.ext`, and `!` exceptions).
fn docker_ignores(path: &str) -> bool {
    let mut ignored = false;
    for line in read(".dockerignore").lines().map(str::trim) {
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let (except, pattern) = match line.strip_prefix('!') {
            Some(pattern) => (true, pattern),
            None => (false, line),
        };
        let pattern = pattern.trim_end_matches('/');
        let matches = match pattern.strip_suffix("/*") {
            Some(dir) => path.starts_with(&format!("{dir}/")),
            None => match pattern.strip_prefix('*') {
                Some(ending) => path.ends_with(ending),
                None => path == pattern || path.starts_with(&format!("{pattern}/")),
            },
        };
        if matches {
            ignored = !except;
        }
    }
    ignored
}

#[test]
fn the_image_build_context_holds_every_workspace_member_and_no_target() {
    let manifest = read("Cargo.toml");
    let members = manifest
        .split("members = [")
        .nth(1)
        .and_then(|rest| rest.split(']').next())
        .unwrap();
    let members: Vec<&str> = members
        .split(',')
        .map(|m| m.trim().trim_matches('"'))
        .filter(|m| !m.is_empty())
        .collect();
    assert!(members.contains(&"bench/origin"), "{members:?}");
    for member in members {
        assert!(
            !docker_ignores(&format!("{member}/Cargo.toml")),
            "{member} is a workspace member: without it cargo cannot build in the image"
        );
    }
    assert!(docker_ignores("target/release/api-cache"));
    assert!(docker_ignores("bench/fronts.sh"));
}

#[test]
fn deployments_are_hardened_probed_and_bounded() {
    let objects = manifests();
    for service in ["api-rest", "api-cache"] {
        let deployment = object(&objects, "Deployment", service);
        assert_eq!(
            deployment["spec"]["replicas"].as_i64(),
            Some(2),
            "{service}"
        );
        let pod = &deployment["spec"]["template"]["spec"];
        assert_eq!(
            pod["securityContext"]["runAsNonRoot"].as_bool(),
            Some(true),
            "{service}"
        );
        assert!(
            pod["terminationGracePeriodSeconds"].as_i64().unwrap() > 25,
            "{service}"
        );
        let c = container(deployment, service);
        assert_eq!(str_of(&c["readinessProbe"]["httpGet"]["path"]), "/readyz");
        assert_eq!(str_of(&c["livenessProbe"]["httpGet"]["path"]), "/healthz");
        for probe in ["readinessProbe", "livenessProbe"] {
            assert_eq!(
                str_of(&c[probe]["httpGet"]["port"]),
                "admin",
                "{service} {probe}"
            );
        }
        let admin = c["ports"]
            .as_vec()
            .unwrap()
            .iter()
            .find(|p| str_of(&p["name"]) == "admin")
            .expect("an admin port");
        let scraped =
            &deployment["spec"]["template"]["metadata"]["annotations"]["prometheus.io/port"];
        assert_eq!(
            str_of(scraped),
            admin["containerPort"].as_i64().unwrap().to_string(),
            "{service}: metrics are scraped on the admin port"
        );
        assert!(
            !c["resources"]["requests"]["cpu"].is_badvalue()
                && !c["resources"]["limits"]["memory"].is_badvalue()
        );
        assert_eq!(
            c["securityContext"]["readOnlyRootFilesystem"].as_bool(),
            Some(true)
        );
        assert_eq!(
            c["securityContext"]["allowPrivilegeEscalation"].as_bool(),
            Some(false)
        );
        assert_eq!(
            str_of(&c["securityContext"]["capabilities"]["drop"][0]),
            "ALL"
        );
        object(&objects, "HorizontalPodAutoscaler", service);
        object(&objects, "PodDisruptionBudget", service);
    }
    let public = object(&objects, "Service", "api-cache");
    assert_eq!(str_of(&public["spec"]["type"]), "NodePort");
    assert_eq!(
        public["spec"]["ports"].as_vec().unwrap().len(),
        1,
        "only the public port is published"
    );
    assert_eq!(
        str_of(&object(&objects, "Service", "api-cache-admin")["spec"]["type"]),
        "ClusterIP"
    );
    assert_eq!(
        str_of(&object(&objects, "Service", "api-rest")["spec"]["type"]),
        "ClusterIP"
    );
    assert_eq!(
        object(&objects, "Service", "api-rest")["spec"]["ports"][0]["port"].as_i64(),
        Some(5000)
    );
    assert_eq!(
        str_of(&object(&objects, "Service", "postgres")["spec"]["clusterIP"]),
        "None"
    );
}

#[test]
fn network_policies_admit_only_the_intended_callers() {
    let objects = manifests();
    let policies: BTreeMap<String, (String, Vec<String>)> = objects
        .iter()
        .map(|(_, o)| o)
        .filter(|o| str_of(&o["kind"]) == "NetworkPolicy")
        .map(|p| {
            let target = str_of(&p["spec"]["podSelector"]["matchLabels"]["app.kubernetes.io/name"])
                .to_owned();
            let callers = p["spec"]["ingress"]
                .as_vec()
                .unwrap()
                .iter()
                .flat_map(|rule| rule["from"].as_vec().cloned().unwrap_or_default())
                .map(|from| {
                    str_of(&from["podSelector"]["matchLabels"]["app.kubernetes.io/name"]).to_owned()
                })
                .collect();
            (target.clone(), (target, callers))
        })
        .collect();
    assert_eq!(
        policies["api-rest"].1,
        ["api-cache", ""],
        "api-cache, and Prometheus' namespace"
    );
    let api_rest = objects
        .iter()
        .map(|(_, o)| o)
        .find(|o| {
            str_of(&o["kind"]) == "NetworkPolicy"
                && str_of(&o["metadata"]["name"]) == "api-rest-from-api-cache"
        })
        .unwrap();
    assert_eq!(
        str_of(
            &api_rest["spec"]["ingress"][1]["from"][0]["namespaceSelector"]["matchLabels"]["kubernetes.io/metadata.name"]
        ),
        "monitoring"
    );
    assert_eq!(policies["redis"].1, ["api-cache"]);
    assert_eq!(policies["postgres"].1, ["api-rest"]);
    // api-cache: its public port to anyone, its admin port to monitoring only.
    let api_cache = objects
        .iter()
        .map(|(_, o)| o)
        .find(|o| {
            str_of(&o["kind"]) == "NetworkPolicy"
                && str_of(&o["metadata"]["name"]) == "api-cache-public"
        })
        .unwrap();
    let rules = api_cache["spec"]["ingress"].as_vec().unwrap();
    let ports = |rule: &Yaml| -> Vec<i64> {
        rule["ports"]
            .as_vec()
            .unwrap()
            .iter()
            .map(|p| p["port"].as_i64().unwrap())
            .collect()
    };
    for rule in rules {
        if rule["from"].is_badvalue() {
            assert_eq!(ports(rule), [8080], "only the public port is open to all");
        } else {
            assert_eq!(ports(rule), [9090]);
            assert_eq!(
                str_of(
                    &rule["from"][0]["namespaceSelector"]["matchLabels"]["kubernetes.io/metadata.name"]
                ),
                "monitoring"
            );
        }
    }
}

#[test]
fn the_init_configmaps_are_up_to_date_and_each_fits_kubectl_apply() {
    let output = Command::new("bash")
        .arg(repo_root().join("scripts/gen-k8s-initdb.sh"))
        .arg("--stdout")
        .output()
        .unwrap();
    assert!(output.status.success());
    assert!(
        output.stdout == read("kubernetes/postgres-initdb.yaml").into_bytes(),
        "kubernetes/postgres-initdb.yaml is stale: run scripts/gen-k8s-initdb.sh"
    );
    let objects = manifests();
    let configmaps: Vec<&Yaml> = objects
        .iter()
        .filter(|(file, _)| file == "postgres-initdb.yaml")
        .map(|(_, o)| o)
        .collect();
    for configmap in &configmaps {
        let bytes: usize = configmap["data"]
            .as_hash()
            .unwrap()
            .values()
            .map(|v| str_of(v).len())
            .sum();
        // kubectl apply stores the object in a 256 KiB annotation; keep a margin.
        assert!(
            bytes < 200 * 1024,
            "{} holds {bytes} bytes",
            str_of(&configmap["metadata"]["name"])
        );
    }
    // The StatefulSet mounts every one of them, and nothing else.
    let projected: BTreeSet<String> =
        object(&objects, "StatefulSet", "postgres")["spec"]["template"]["spec"]["volumes"]
            .as_vec()
            .unwrap()
            .iter()
            .filter_map(|v| v["projected"]["sources"].as_vec())
            .flatten()
            .map(|s| str_of(&s["configMap"]["name"]).to_owned())
            .collect();
    let generated: BTreeSet<String> = configmaps
        .iter()
        .map(|c| str_of(&c["metadata"]["name"]).to_owned())
        .collect();
    assert_eq!(projected, generated);
}

/// What the postgres image does with /docker-entrypoint-initdb.d on the first
/// start (docker-entrypoint.sh, docker_process_init_files): in name order, run
/// executable *.sh, source the others in its own `set -Eeo pipefail` shell, feed
/// *.sql to psql, ignore anything else.
const ENTRYPOINT_INITDB: &str = r#"
set -Eeo pipefail
for f in "$INITDB_DIR"/*; do
  case "$f" in
    *.sh)
      if [ -x "$f" ]; then echo "$0: running $f"; "$f"; else echo "$0: sourcing $f"; . "$f"; fi ;;
    *.sql) psql -v ON_ERROR_STOP=1 --no-psqlrc --username "$POSTGRES_USER" --dbname "$POSTGRES_DB" -f "$f" ;;
    *) echo "$0: ignoring $f" ;;
  esac
done
"#;

/// environment.env as the operator fills it in, pointed at a test server.
fn filled_environment(server: &PostgresServer) -> Vec<(String, String)> {
    let mut vars: Vec<(String, String)> = read("environment.env")
        .lines()
        .filter(|l| !l.trim().is_empty() && !l.starts_with('#'))
        .filter_map(|l| l.split_once('=').map(|(k, v)| (k.to_owned(), v.to_owned())))
        .map(|(k, v)| {
            if k.contains("PASSWORD") {
                (k.clone(), format!("filled-{k}"))
            } else {
                (k, v)
            }
        })
        .collect();
    vars.retain(|(k, _)| {
        !matches!(
            k.as_str(),
            "POSTGRES_HOST" | "POSTGRES_PORT" | "API_REST_PORT" | "LOG_FORMAT"
        )
    });
    vars.extend([
        ("POSTGRES_HOST".into(), "127.0.0.1".into()),
        ("POSTGRES_PORT".into(), server.port().to_string()),
        ("LOG_FORMAT".into(), "json".into()),
    ]);
    vars
}

/// Runs a populated initdb folder through the image's logic on a fresh server,
/// then starts the api-rest binary on it with the same variables.
async fn initialise_and_serve(initdb: &Path) {
    let server = PostgresServer::start();
    let env = filled_environment(&server);
    let output = Command::new("bash")
        .arg("-c")
        .arg(ENTRYPOINT_INITDB)
        .arg("docker-entrypoint.sh")
        .env_clear()
        .envs(env.iter().map(|(k, v)| (k.as_str(), v.as_str())))
        .env(
            "PATH",
            format!(
                "{}:{}",
                server.bin_dir().display(),
                std::env::var("PATH").unwrap()
            ),
        )
        .env("HOME", "/tmp")
        .env("PGHOST", server.socket_dir())
        .env("PGPORT", server.port().to_string())
        .env("INITDB_DIR", initdb)
        .output()
        .unwrap();
    let log = format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(output.status.success(), "initialisation failed:\n{log}");
    assert!(log.contains("ignoring") || !log.contains(".csv"), "{log}");

    let (port, admin_port) = (free_port(), free_port());
    let _api = KillOnDrop(
        Command::new(binary("api-rest"))
            .env_clear()
            .envs(env.iter().map(|(k, v)| (k.as_str(), v.as_str())))
            .env("API_REST_PORT", port.to_string())
            .env("API_REST_ADMIN_PORT", admin_port.to_string())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
    );
    assert!(wait_for_port(port, Duration::from_secs(10)));
    let client = reqwest::Client::new();
    let rows: Vec<serde_json::Value> = client
        .get(format!("http://127.0.0.1:{port}/air_quality"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let ready = client
        .get(format!("http://127.0.0.1:{admin_port}/readyz"))
        .send()
        .await
        .unwrap()
        .status();
    assert_eq!(
        rows.len(),
        read("postgres/air_quality.csv").lines().count() - 1
    );
    assert_eq!(ready, 200);
    let stations: Vec<serde_json::Value> = client
        .get(format!("http://127.0.0.1:{port}/stations"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(
        stations.len(),
        read("postgres/stations.csv").lines().count() - 1
    );
}

#[tokio::test]
async fn the_kubernetes_configmaps_initialise_postgres_as_the_image_runs_them() {
    // Lay the ConfigMaps out as the projected volume does (read-only files, so
    // the image sources the script instead of executing it).
    let dir = tempfile::tempdir().unwrap();
    for (file, configmap) in manifests() {
        if file != "postgres-initdb.yaml" {
            continue;
        }
        for (key, value) in configmap["data"].as_hash().unwrap() {
            let path = dir.path().join(str_of(key));
            std::fs::write(&path, str_of(value)).unwrap();
            std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o444)).unwrap();
        }
    }
    initialise_and_serve(dir.path()).await;
}

#[tokio::test]
async fn the_compose_mounts_initialise_postgres_as_the_image_runs_them() {
    let compose = compose();
    let dir = tempfile::tempdir().unwrap();
    for volume in compose["services"]["postgres"]["volumes"].as_vec().unwrap() {
        let parts: Vec<&str> = str_of(volume).split(':').collect();
        if let Some(file) = parts[1].strip_prefix("/docker-entrypoint-initdb.d/") {
            let source = repo_root().join(parts[0].trim_start_matches("./"));
            std::fs::copy(&source, dir.path().join(file)).unwrap();
        }
    }
    initialise_and_serve(dir.path()).await;
}

#[test]
fn jenkins_and_ci_run_the_same_checks_script() {
    let ci = read(".ci/run");
    assert!(
        ci.contains("exec scripts/test.sh\n"),
        ".ci/run must run scripts/test.sh (all steps)"
    );
    let test_script = read("scripts/test.sh");
    let jenkinsfile = read("Jenkinsfile");
    let mut steps = Vec::new();
    for piece in jenkinsfile.split("sh 'scripts/").skip(1) {
        let command = piece.split('\'').next().unwrap();
        let script = command.split_whitespace().next().unwrap();
        let path = repo_root().join("scripts").join(script);
        let mode = std::fs::metadata(&path)
            .unwrap_or_else(|_| panic!("Jenkinsfile runs missing scripts/{script}"))
            .permissions()
            .mode();
        assert!(mode & 0o111 != 0, "scripts/{script} is not executable");
        if script == "test.sh" {
            let step = command.split_whitespace().nth(1).unwrap();
            assert!(
                test_script.contains(&format!("\n  {step}) ")),
                "scripts/test.sh has no step {step}"
            );
            steps.push(step.to_owned());
        }
    }
    assert_eq!(
        steps,
        ["lint", "unit", "integration", "deploy"],
        "Jenkins runs every step CI runs"
    );
    for stage in ["Push images", "Deploy"] {
        let body = jenkinsfile
            .split(&format!("stage('{stage}')"))
            .nth(1)
            .unwrap();
        assert!(
            body.trim_start()
                .starts_with("{\n            when { anyOf { branch 'develop'; branch 'main' } }"),
            "{stage} is gated"
        );
    }
}

#[test]
fn rendered_manifests_point_only_our_images_at_the_registry() {
    let output = Command::new("bash")
        .arg(repo_root().join("scripts/render-manifests.sh"))
        .args(["registry.example.com/team", "1.2.3"])
        .output()
        .unwrap();
    assert!(output.status.success());
    let rendered = String::from_utf8(output.stdout).unwrap();
    let images: Vec<&str> = rendered
        .lines()
        .filter_map(|l| l.trim().strip_prefix("image: "))
        .collect();
    assert!(
        images.contains(&"registry.example.com/team/api-rest:1.2.3"),
        "{images:?}"
    );
    assert!(
        images.contains(&"registry.example.com/team/api-cache:1.2.3"),
        "{images:?}"
    );
    assert!(
        images.iter().all(|i| !i.starts_with("air-quality-api/")),
        "{images:?}"
    );
    let documents = YamlLoader::load_from_str(&rendered).unwrap();
    assert_eq!(documents.len(), manifests().len());
}
