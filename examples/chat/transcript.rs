//! What each side says: lines prefixed by who says them (`[server]`, `[alice]`, `[bob]`), printed as they happen
//! and kept for the tests and for the timeout message.

use std::fmt::Display;
use std::io::Write;
use std::sync::{Arc, Mutex, PoisonError};

/// The scene's lines so far (a few dozen: the scene is fixed), optionally echoed to stdout.
#[derive(Debug, Clone, Default)]
pub(crate) struct Transcript {
    lines: Arc<Mutex<Vec<String>>>,
    echo: bool,
}

impl Transcript {
    /// A transcript that prints every line on stdout as it is said.
    pub(crate) fn printed() -> Self {
        Self {
            lines: Arc::default(),
            echo: true,
        }
    }

    /// Someone who speaks in this transcript.
    pub(crate) fn voice(&self, who: &'static str) -> Voice {
        Voice {
            who,
            transcript: self.clone(),
        }
    }

    /// Adds a line that says which part of the scene begins: `== text`.
    pub(crate) fn heading(&self, text: impl Display) {
        self.push(format!("== {text}"));
    }

    /// Every line so far.
    #[cfg(test)]
    pub(crate) fn lines(&self) -> Vec<String> {
        self.lock().clone()
    }

    /// The latest line, if any.
    pub(crate) fn last(&self) -> Option<String> {
        self.lock().last().cloned()
    }

    fn push(&self, line: String) {
        let mut lines = self.lock();
        if self.echo {
            // Printed under the lock, so the printed order is the kept order. A closed stdout is not worth failing for.
            let _ = writeln!(std::io::stdout().lock(), "{line}");
        }
        lines.push(line);
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Vec<String>> {
        self.lines.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// One speaker of a [`Transcript`].
#[derive(Debug, Clone)]
pub(crate) struct Voice {
    who: &'static str,
    transcript: Transcript,
}

impl Voice {
    /// Adds the line `[who] text`.
    pub(crate) fn say(&self, text: impl Display) {
        self.transcript.push(format!("[{}] {text}", self.who));
    }
}
