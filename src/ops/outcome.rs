//! The outcome labels: what became of one delivery, as the JSON answer, the
//! logs and the `outcome` metric label name it.

/// What became of one delivery: a short, stable name used in the JSON
/// answer, in logs and as the `outcome` label of the request counter.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
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
}

impl Outcome {
    /// Every outcome, in declaration order (`Outcome as usize` indexes it).
    pub const ALL: [Outcome; 10] = [
        Outcome::Published,
        Outcome::Duplicate,
        Outcome::Probe,
        Outcome::Unsigned,
        Outcome::BadSignature,
        Outcome::TooLarge,
        Outcome::BadRequest,
        Outcome::Invalid,
        Outcome::Overloaded,
        Outcome::NatsUnavailable,
    ];

    pub const fn as_str(self) -> &'static str {
        match self {
            Outcome::Published => "published",
            Outcome::Duplicate => "duplicate",
            Outcome::Probe => "probe",
            Outcome::Unsigned => "unsigned",
            Outcome::BadSignature => "bad_signature",
            Outcome::TooLarge => "too_large",
            Outcome::BadRequest => "bad_request",
            Outcome::Invalid => "invalid",
            Outcome::Overloaded => "overloaded",
            Outcome::NatsUnavailable => "nats_unavailable",
        }
    }
}

impl std::fmt::Display for Outcome {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn outcomes_are_indexed_by_their_position() {
        for (i, o) in Outcome::ALL.iter().enumerate() {
            assert_eq!(*o as usize, i, "{o}");
        }
    }
}
