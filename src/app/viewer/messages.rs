//! The message panel's state: the last few errors and notes shown to the user.

/// Most messages kept; older ones are dropped.
const MAX_MESSAGES: usize = 6;

/// A message shown in the message panel.
#[derive(Clone, Debug, PartialEq)]
pub struct UiMessage {
    pub text: String,
    pub error: bool,
}

/// The messages on show, oldest first.
#[derive(Clone, Debug, Default)]
pub struct Messages {
    list: Vec<UiMessage>,
}

impl Messages {
    /// Adds `m` unless it repeats the last one; drops the oldest beyond the limit.
    pub fn push(&mut self, m: UiMessage) {
        if self.list.last() != Some(&m) {
            self.list.push(m);
        }
        if self.list.len() > MAX_MESSAGES {
            self.list.remove(0);
        }
    }

    /// The messages, oldest first.
    pub fn all(&self) -> &[UiMessage] {
        &self.list
    }

    /// Removes message `i` (the user dismissed it).
    pub fn dismiss(&mut self, i: usize) {
        if i < self.list.len() {
            self.list.remove(i);
        }
    }
}
