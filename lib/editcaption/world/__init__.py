"""The synthetic world: scenes, their rendering and edits, the reference instructions (`synthetic`), and the
rule judge that reads an instruction against a pair's recorded changes (`rule_judge`). It stands on the
contracts (`records`, `vocab`, `rubric`) and under everything that makes, trains on or scores data."""
