"""The score worker: decode → validate → features → score → encode, dead letters, the model source."""
