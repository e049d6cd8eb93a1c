//! `consumers`: every durable consumer on the bridge's stream, with its
//! filters and how far behind it is.

use std::process::ExitCode;

use async_nats::jetstream;

use crate::cli::templates::created_at;
use crate::consumer;
use crate::settings::{Settings, env_name};

#[derive(Debug, clap::Args)]
pub struct ConsumersArgs {
    /// One JSON object per consumer instead of the table.
    #[arg(long)]
    pub json: bool,
}

/// Runs `consumers`: 0 listed, 1 NATS or stream failure, 2 bad settings.
pub async fn run(args: ConsumersArgs, settings: &Settings) -> ExitCode {
    if !settings.jetstream.enabled {
        eprintln!(
            "error: durable consumers live in JetStream, but jetstream.enabled is false ({})",
            env_name("jetstream.enabled")
        );
        return ExitCode::from(2);
    }
    let client = match super::connect_or_report(settings, "fastpix-nats-bridge consumers").await {
        Ok(c) => c,
        Err(code) => return code,
    };
    let js = jetstream::new(client.clone());
    let stream = settings.jetstream.stream.as_str();
    let code = match consumer::list_consumers(&js, stream).await {
        Ok(list) => {
            if args.json {
                for c in &list {
                    println!("{}", json_line(c));
                }
            } else {
                print_table(&list);
                eprintln!("{} durable consumer(s) on stream {stream}", list.len());
            }
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
    };
    let _ = client.drain().await;
    code
}

fn filters(c: &jetstream::consumer::Info) -> Vec<String> {
    let mut f = c.config.filter_subjects.clone();
    if !c.config.filter_subject.is_empty() {
        f.insert(0, c.config.filter_subject.clone());
    }
    if f.is_empty() {
        f.push("(all)".to_owned());
    }
    f
}

/// The latest of the last delivery and the last acknowledgement.
fn last_active(c: &jetstream::consumer::Info) -> Option<String> {
    [c.delivered.last_active, c.ack_floor.last_active]
        .into_iter()
        .flatten()
        .max()
        .map(created_at)
}

fn print_table(list: &[jetstream::consumer::Info]) {
    let rows: Vec<[String; 6]> = list
        .iter()
        .map(|c| {
            [
                c.name.clone(),
                c.num_pending.to_string(),
                c.num_ack_pending.to_string(),
                c.num_redelivered.to_string(),
                last_active(c).unwrap_or_else(|| "never".to_owned()),
                filters(c).join(" "),
            ]
        })
        .collect();
    let head = [
        "NAME",
        "PENDING",
        "ACK-PENDING",
        "REDELIVERED",
        "LAST-ACTIVE",
        "FILTERS",
    ];
    let mut widths: Vec<usize> = head.iter().map(|h| h.len()).collect();
    for row in &rows {
        for (w, cell) in widths.iter_mut().zip(row) {
            *w = (*w).max(cell.len());
        }
    }
    let line = |cells: Vec<&str>| {
        let mut out = String::new();
        for (i, (cell, w)) in cells.iter().zip(&widths).enumerate() {
            if i + 1 == cells.len() {
                out.push_str(cell);
            } else {
                out.push_str(&format!("{cell:<w$}  "));
            }
        }
        out
    };
    println!("{}", line(head.to_vec()));
    for row in &rows {
        println!("{}", line(row.iter().map(String::as_str).collect()));
    }
}

fn json_line(c: &jetstream::consumer::Info) -> String {
    serde_json::json!({
        "name": c.name,
        "filters": filters(c),
        "pending": c.num_pending,
        "ack_pending": c.num_ack_pending,
        "redelivered": c.num_redelivered,
        "waiting": c.num_waiting,
        "last_active": last_active(c),
    })
    .to_string()
}
