"""Recovery: failure patterns, proposals (Claude or rules), approved actions, the journal."""
