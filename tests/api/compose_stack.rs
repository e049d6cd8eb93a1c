//! The top-level docker-compose.yml, run natively: nats-server with the very
//! config file the compose file mounts, the bridge with the compose file's
//! environment, every consumer service with its command and environment,
//! each gated on the healthchecks compose would wait for. One event of every
//! seed type sent with `send` (as `docker compose exec bridge … send` runs it)
//! must reach every consumer that asks for its type, at least two each; then
//! every consumer's own healthcheck must pass.

use std::collections::BTreeMap;
use std::time::Duration;

use fastpix_nats_bridge::consumer::{self, Family};

use crate::deploy::*;

/// A container's argv as run here: the Python examples with the tests'
/// Python (None when it is not installed: skipped) and the script from the
/// repository; everything else as is.
fn local_argv(argv: &[String]) -> Option<Vec<String>> {
    let Some(script) = python_example(argv) else {
        return Some(argv.to_vec());
    };
    let python = external_tool("TEST_PYTHON")?;
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("examples/python")
        .join(script);
    let mut local = vec![
        python.to_string_lossy().into_owned(),
        path.to_string_lossy().into_owned(),
    ];
    local.extend(argv[2..].iter().cloned());
    Some(local)
}
use crate::helpers::*;

/// The event families a consumer service reads: the examples read one each,
/// `subscribe` without filters reads them all.
fn families_read_by(argv: &[String]) -> Option<Family> {
    if python_example(argv) == Some("media_consumer.py") {
        return Some(Family::Media);
    }
    match native_program(&argv[0]).file_name()?.to_str()? {
        "live_stream_worker" => Some(Family::LiveStream),
        "media_catalog" => Some(Family::Media),
        _ => {
            // Positional arguments are filters; these options take a value.
            let mut filters = Vec::new();
            let mut args = argv.iter().skip(2);
            while let Some(arg) = args.next() {
                if matches!(
                    arg.as_str(),
                    "--durable" | "--queue" | "--since" | "--count"
                ) {
                    args.next();
                } else if !arg.starts_with("--") {
                    filters.push(arg);
                }
            }
            assert!(
                argv[1] == "subscribe" && filters.is_empty(),
                "unexpected consumer {argv:?}: teach this test what it reads"
            );
            None
        }
    }
}

/// Runs the compose healthcheck of `service` here (its program, with the
/// container's port 8080 replaced by `port`, and the container's
/// environment `env`, which docker gives the healthcheck too) until it passes.
async fn wait_healthy(service: &Service<'_>, port: u16, env: &BTreeMap<String, String>) {
    let mut test = local_argv(&service.healthcheck_test()).expect("a program to run");
    for arg in &mut test {
        *arg = arg.replace("127.0.0.1:8080", &format!("127.0.0.1:{port}"));
    }
    let program = native_program(&test[0]);
    let run = || {
        std::process::Command::new(&program)
            .args(&test[1..])
            .env_clear()
            .envs(env)
            .output()
    };
    let healthy = eventually(Duration::from_secs(30), || async {
        run().is_ok_and(|o| o.status.success())
    })
    .await;
    assert!(
        healthy,
        "`{}` never passed its healthcheck {test:?}: {}",
        service.name,
        run().map_or_else(
            |e| e.to_string(),
            |o| String::from_utf8_lossy(&o.stderr).into_owned()
        )
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_seed_event_sent_into_the_compose_stack_reaches_its_consumers() {
    let compose = Compose::load("docker-compose.yml");

    let nats = NatsProcess::start(
        &compose.service("nats"),
        free_port(),
        free_port(),
        &[],
        &BTreeMap::new(),
    );
    let nats_check = compose.service("nats").healthcheck_test();
    let path = nats_check
        .iter()
        .find_map(|a| a.split_once(":8222").map(|(_, p)| p.to_owned()))
        .expect("the nats healthcheck asks the monitoring port");
    let url = nats.monitor_url(&path);
    assert!(
        eventually(Duration::from_secs(30), || async {
            reqwest::get(&url).await.is_ok_and(|r| r.status() == 200)
        })
        .await,
        "nats never healthy:\n{}",
        nats.log_text()
    );
    let hosts = BTreeMap::from([("nats".to_owned(), nats.client_port)]);

    // The bridge: the compose environment, NATS at its local address.
    let bridge_service = compose.service("bridge");
    let mut bridge_env = bridge_service.environment();
    let nats_url = localize_urls(&bridge_env["FASTPIX_BRIDGE__NATS__URL"], &hosts);
    bridge_env.insert("FASTPIX_BRIDGE__NATS__URL".into(), nats_url.clone());
    let bridge = BridgeProcess::start(&bridge_env.clone().into_iter().collect::<Vec<_>>());
    let port = bridge.addr.port();
    wait_healthy(&bridge_service, port, &BTreeMap::new()).await;

    let consumer_envs: BTreeMap<String, BTreeMap<String, String>> = consumer_services(&compose)
        .into_iter()
        .filter(|name| local_argv(&container_argv(&compose.service(name))).is_some())
        .map(|name| {
            let mut env = compose.service(&name).environment();
            let local = localize_urls(&env["FASTPIX_BRIDGE__NATS__URL"], &hosts);
            env.insert("FASTPIX_BRIDGE__NATS__URL".into(), local);
            (name, env)
        })
        .collect();
    // `forward` delivers over HTTP to `forward-receiver` (Python), which
    // prints what it verified: that receiver is what shows the events. It
    // runs here on a port of its own, and the forwarder's destination URLs
    // point at it.
    let receiver_port = free_port();
    let receiver = local_argv(&container_argv(&compose.service("forward-receiver"))).map(|argv| {
        let mut env = compose.service("forward-receiver").environment();
        env.insert("PORT".into(), receiver_port.to_string());
        ServiceProcess::start("forward-receiver", &argv, &env)
    });
    let mut forwarders = Vec::new();
    let mut consumers: Vec<(ServiceProcess, Option<Family>)> = Vec::new();
    for (name, env) in &consumer_envs {
        let argv = container_argv(&compose.service(name));
        let local = local_argv(&argv).expect("filtered above");
        if argv.get(1).map(String::as_str) == Some("forward") {
            if receiver.is_none() {
                continue;
            }
            let mut env = env.clone();
            for (k, v) in env.iter_mut() {
                if k.ends_with("__URL") && v.starts_with("http://forward-receiver:8000/") {
                    *v = v.replace(
                        "forward-receiver:8000",
                        &format!("127.0.0.1:{receiver_port}"),
                    );
                }
            }
            env.insert(
                "FASTPIX_BRIDGE__HTTP__ADMIN_LISTEN".into(),
                "127.0.0.1:0".into(),
            );
            forwarders.push(ServiceProcess::start(name, &local, &env));
            // New destinations start at new events: bound before any is sent.
            wait_healthy(&compose.service(name), port, &env).await;
            continue;
        }
        consumers.push((
            ServiceProcess::start(name, &local, env),
            families_read_by(&argv),
        ));
    }
    if let Some(receiver) = receiver
        && !forwarders.is_empty()
    {
        consumers.push((receiver, None));
    }
    assert!(consumers.len() >= 2);

    // `docker compose exec bridge fastpix-nats-bridge send --all`: the
    // bridge container's environment, so its secret and its port.
    bridge_env.insert(
        "FASTPIX_BRIDGE__HTTP__LISTEN".into(),
        format!("127.0.0.1:{port}"),
    );
    let sent = std::process::Command::new(native_program("fastpix-nats-bridge"))
        .args(["send", "--all"])
        .env_clear()
        .envs(&bridge_env)
        .output()
        .expect("run send");
    let stdout = String::from_utf8_lossy(&sent.stdout).into_owned();
    assert!(
        sent.status.success(),
        "send failed: {stdout}{}\nbridge log:\n{}",
        String::from_utf8_lossy(&sent.stderr),
        bridge.log_text()
    );
    // `200 OK  video.media.ready  id=…  {…}`, one line per event.
    let ids: BTreeMap<String, String> = stdout
        .lines()
        .filter_map(|line| {
            let mut words = line.split_whitespace().skip_while(|w| !w.contains('.'));
            let event_type = words.next()?.to_owned();
            let id = words.next()?.strip_prefix("id=")?.to_owned();
            Some((event_type, id))
        })
        .collect();
    let mut seed: Vec<&str> = SEED_TYPES.to_vec();
    seed.sort();
    let mut sent_types: Vec<&str> = ids.keys().map(String::as_str).collect();
    sent_types.sort();
    assert_eq!(
        sent_types, seed,
        "send --all sends every seed type once:\n{stdout}"
    );
    assert_eq!(consumer::seed_types().count(), SEED_TYPES.len());

    let delivered = |c: &ServiceProcess, id: &str| c.stdout().contains(id);
    let wants = |family: Option<Family>, event_type: &str| {
        family.is_none_or(|f| Family::of_type(event_type) == Some(f))
    };
    let all_arrived = eventually(Duration::from_secs(30), || {
        let consumers = &consumers;
        let ids = &ids;
        async move {
            consumers.iter().all(|(c, family)| {
                ids.iter()
                    .filter(|(t, _)| wants(*family, t))
                    .all(|(_, id)| delivered(c, id))
            })
        }
    })
    .await;
    for (c, family) in &mut consumers {
        let missing: Vec<&String> = ids
            .iter()
            .filter(|(t, id)| wants(*family, t) && !delivered(c, id))
            .map(|(t, _)| t)
            .collect();
        let exit = c.exit_code();
        assert!(
            all_arrived && missing.is_empty(),
            "`{}` (exit {exit:?}) is missing {missing:?}\nstdout:\n{}\nstderr:\n{}",
            c.name,
            c.stdout(),
            c.stderr()
        );
        let strays: Vec<&String> = ids
            .iter()
            .filter(|(t, id)| !wants(*family, t) && delivered(c, id))
            .map(|(t, _)| t)
            .collect();
        assert!(
            strays.is_empty(),
            "`{}` got events it does not read: {strays:?}",
            c.name
        );
    }
    for event_type in ids.keys() {
        let readers = consumers
            .iter()
            .filter(|(_, f)| wants(*f, event_type))
            .count();
        assert!(
            readers >= 2,
            "{event_type} reaches only {readers} consumer(s)"
        );
    }
    // Give a moment for duplicates to show, then check each consumer printed each event once.
    tokio::time::sleep(Duration::from_millis(300)).await;
    for (c, _) in &consumers {
        let out = c.stdout();
        for id in ids.values() {
            assert!(
                out.lines().filter(|l| l.contains(id.as_str())).count() <= 1,
                "`{}` printed {id} twice",
                c.name
            );
        }
    }
    for (c, _) in &consumers {
        // Logs into a pipe, as `docker compose logs` reads them: no colour codes.
        assert!(
            !c.stderr().contains('\u{1b}'),
            "`{}` logs ANSI escape codes:\n{}",
            c.name,
            c.stderr()
        );
    }

    // Each consumer's compose healthcheck, run as docker runs it: the
    // container's environment, after the consumer has bound its durable.
    for (name, env) in &consumer_envs {
        wait_healthy(&compose.service(name), port, env).await;
    }
}
