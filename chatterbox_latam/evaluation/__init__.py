"""Is the fine-tune better? The harness (`harness`) synthesises the test sentences with each system and scores them
(`metrics`) against the project's targets in a report (`report`); `listening_test` builds and scores a MOS test."""
