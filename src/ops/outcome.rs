//! The outcome labels: what became of one delivery, as the JSON answer, the
//! logs and the `outcome` metric label name it.

/// What became of one delivery: a short, stable name used in the JSON
/// answer, in logs and as the `outcome` label of the request counter.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DeliveryOutcome {
    Published,
    Duplicate,
    Probe,
    Unsigned,
    BadSignature,
    TooLarge,
    BadRequest,
    Invalid,
    Overloaded,
    NatsUnavailable,
    /// The stream is full (`jetstream.max_bytes`): NATS is up, storage is not.
    StorageFull,
}

impl DeliveryOutcome {
    /// Every outcome, in declaration order (`DeliveryOutcome as usize` indexes it).
    pub const ALL: [DeliveryOutcome; 11] = [
        DeliveryOutcome::Published,
        DeliveryOutcome::Duplicate,
        DeliveryOutcome::Probe,
        DeliveryOutcome::Unsigned,
        DeliveryOutcome::BadSignature,
        DeliveryOutcome::TooLarge,
        DeliveryOutcome::BadRequest,
        DeliveryOutcome::Invalid,
        DeliveryOutcome::Overloaded,
        DeliveryOutcome::NatsUnavailable,
        DeliveryOutcome::StorageFull,
    ];

    pub const fn as_str(self) -> &'static str {
        match self {
            DeliveryOutcome::Published => "published",
            DeliveryOutcome::Duplicate => "duplicate",
            DeliveryOutcome::Probe => "probe",
            DeliveryOutcome::Unsigned => "unsigned",
            DeliveryOutcome::BadSignature => "bad_signature",
            DeliveryOutcome::TooLarge => "too_large",
            DeliveryOutcome::BadRequest => "bad_request",
            DeliveryOutcome::Invalid => "invalid",
            DeliveryOutcome::Overloaded => "overloaded",
            DeliveryOutcome::NatsUnavailable => "nats_unavailable",
            DeliveryOutcome::StorageFull => "storage_full",
        }
    }
}

impl std::fmt::Display for DeliveryOutcome {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn outcomes_are_indexed_by_their_position() {
        for (i, o) in DeliveryOutcome::ALL.iter().enumerate() {
            assert_eq!(*o as usize, i, "{o}");
        }
    }
}
