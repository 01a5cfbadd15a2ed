"""Reference builders shared by the sidecar, its tests, the TS tests' fixture scripts and the conformance suite."""
