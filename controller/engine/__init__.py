"""The built-in run executor: step types (`steps`), the http client (`http`), circuit
breakers (`breaker`) and `runner.advance`. The run state machine itself is pure and lives
in `controller.model.runs`."""
