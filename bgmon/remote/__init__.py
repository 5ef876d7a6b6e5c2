"""Remote hosts: each one's bgmon streams its verdicts (`--follow --json`) through ssh or any
command; this bgmon merges them under a group per host. See docs/formats.md (the protocol)."""
