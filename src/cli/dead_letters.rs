//! `dead-letters list|redrive`: the events consumers gave up on, and
//! delivering them again to one consumer.

use std::process::ExitCode;

use async_nats::jetstream;

use crate::cli::templates::created_at;
use crate::consumer::dead_letters::{self, DeadLetter, Which};
use crate::consumer::{BindError, headers};
use crate::settings::{Settings, env_name};

#[derive(Debug, clap::Subcommand)]
pub enum DeadLettersCommand {
    /// Show dead letters, oldest first: one line each, or their JSON.
    List {
        /// Only this durable consumer's.
        #[arg(long, value_name = "NAME")]
        consumer: Option<String>,
        /// One JSON object per line: sequence, consumer, reason, headers and payload.
        #[arg(long)]
        json: bool,
    },
    /// Deliver dead letters again to their consumer only (not to every
    /// consumer of the subject), and remove them from the dead letters.
    Redrive {
        /// The durable consumer whose dead letters are delivered again.
        #[arg(long, value_name = "NAME")]
        consumer: String,
        /// Every dead letter of that consumer.
        #[arg(long, conflicts_with = "seqs")]
        all: bool,
        /// Dead-letter sequence numbers (as `list` shows them).
        #[arg(value_name = "SEQ", required_unless_present = "all")]
        seqs: Vec<u64>,
    },
}

/// Runs the command: 0 done, 1 NATS or stream failure, 2 bad arguments.
pub async fn run(command: DeadLettersCommand, settings: &Settings) -> ExitCode {
    if !settings.jetstream.enabled {
        eprintln!(
            "error: dead letters live in JetStream, but jetstream.enabled is false ({})",
            env_name("jetstream.enabled")
        );
        return ExitCode::from(2);
    }
    let client = match super::connect_or_report(settings, "fastpix-nats-bridge dead-letters").await
    {
        Ok(c) => c,
        Err(code) => return code,
    };
    let js = jetstream::new(client.clone());
    // With several webhooks, FASTPIX_BRIDGE_WEBHOOK names the one whose dead letters these are.
    let webhook = match settings.webhook_from_env() {
        Ok(w) => w,
        Err(e) => {
            eprintln!("error: {e}");
            return ExitCode::from(2);
        }
    };
    let stream = webhook.stream.as_str();
    let prefix = &webhook.prefix;
    let result = match command {
        DeadLettersCommand::List { consumer, json } => {
            dead_letters::list(&js, stream, prefix, consumer.as_deref())
                .await
                .map(|letters| {
                    for letter in &letters {
                        if json {
                            println!("{}", json_line(letter));
                        } else {
                            println!("{}", human_line(letter));
                        }
                    }
                    if !json {
                        eprintln!(
                            "{} dead letter(s) in {}",
                            letters.len(),
                            dead_letters::dead_letter_stream(stream)
                        );
                    }
                })
        }
        DeadLettersCommand::Redrive {
            consumer,
            all,
            seqs,
        } => {
            let which = if all { Which::All } else { Which::Seqs(seqs) };
            dead_letters::redrive(&js, stream, prefix, &consumer, which)
                .await
                .map(|report| {
                    for seq in &report.missing {
                        eprintln!(
                            "note: {seq} is not a dead letter of `{consumer}` (already redriven, or another consumer's)"
                        );
                    }
                    println!(
                        "redriven {} dead letter(s) to `{consumer}`{}",
                        report.redriven.len(),
                        if report.redriven.is_empty() {
                            String::new()
                        } else {
                            format!(
                                ": {}",
                                report
                                    .redriven
                                    .iter()
                                    .map(u64::to_string)
                                    .collect::<Vec<_>>()
                                    .join(" ")
                            )
                        }
                    );
                })
        }
    };
    let code = match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e @ BindError::InvalidName(_)) => {
            eprintln!("error: {e}");
            ExitCode::from(2)
        }
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
    };
    let _ = client.drain().await;
    code
}

/// `seq=3  2026-…Z  consumer=billing  fastpix.video.media.ready  event=… deliveries=6  reason="…"  last_error="…"`;
/// text from the event is quoted with escapes, never printed raw.
fn human_line(l: &DeadLetter) -> String {
    format!(
        "seq={}  {}  consumer={}  {}  stream_seq={}  event={:?}  deliveries={}  reason={:?}  last_error={:?}",
        l.seq,
        created_at(l.stored),
        l.consumer.escape_debug(),
        l.subject.escape_debug(),
        l.stream_sequence
            .map_or_else(|| "-".to_owned(), |s| s.to_string()),
        l.header(headers::EVENT_ID).unwrap_or("-"),
        l.deliveries
            .map_or_else(|| "-".to_owned(), |d| d.to_string()),
        l.reason,
        l.last_error,
    )
}

fn json_line(l: &DeadLetter) -> String {
    let headers: serde_json::Map<String, serde_json::Value> = l
        .headers
        .iter()
        .map(|(k, v)| {
            (
                k.to_string(),
                serde_json::Value::from(v.iter().map(|v| v.as_str()).collect::<Vec<_>>()),
            )
        })
        .collect();
    serde_json::json!({
        "seq": l.seq,
        "stored": created_at(l.stored),
        "consumer": l.consumer,
        "subject": l.subject,
        "stream_seq": l.stream_sequence,
        "reason": l.reason,
        "deliveries": l.deliveries,
        "last_error": l.last_error,
        "headers": headers,
        "payload": String::from_utf8_lossy(&l.payload),
    })
    .to_string()
}
