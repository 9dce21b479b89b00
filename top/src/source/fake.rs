//! A scripted [`Source`] for tests and demos: hands out the snapshots (or failures) it was given,
//! in order, then repeats the last answer.

use std::collections::VecDeque;

use crate::error::{Error, Result};
use crate::model::Snapshot;
use crate::source::Source;

/// Plays back a script of answers.
#[derive(Debug, Clone, Default)]
pub struct FakeSource {
    script: VecDeque<Result<Snapshot, String>>,
    last: Option<Result<Snapshot, String>>,
}

impl FakeSource {
    /// Answers `snapshot` forever.
    pub fn steady(snapshot: Snapshot) -> FakeSource {
        FakeSource::script([Ok(snapshot)])
    }

    /// Answers with each entry in turn (`Err(reason)` plays a lost collector), then repeats the last.
    pub fn script(answers: impl IntoIterator<Item = Result<Snapshot, String>>) -> FakeSource {
        FakeSource { script: answers.into_iter().collect(), last: None }
    }

    fn next_answer(&mut self) -> Result<Snapshot, String> {
        if let Some(answer) = self.script.pop_front() {
            self.last = Some(answer);
        }
        self.last.clone().unwrap_or_else(|| Err("the fake source has an empty script".to_string()))
    }
}

impl Source for FakeSource {
    fn describe(&self) -> String {
        "fake".to_string()
    }

    async fn snapshot(&mut self) -> Result<Snapshot> {
        self.next_answer().map_err(Error::Scripted)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn plays_the_script_then_repeats_the_last_answer() {
        let one = Snapshot { taken_ms: 1, ..Snapshot::default() };
        let mut source = FakeSource::script([Ok(one.clone()), Err("collector gone".into())]);
        assert_eq!(source.snapshot().await.unwrap(), one);
        for _ in 0..2 {
            let error = source.snapshot().await.unwrap_err();
            assert_eq!(error.to_string(), "collector gone");
        }
    }
}
