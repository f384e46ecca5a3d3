"""The shell: CLI, embedded runner, Faust app, HTTP; thin over rules/ and ledger/."""
