//! `explain`: renders a model and its Plan as readable math (text) or as JSON.
//! Invariant: deterministic output (no hash-map order), nothing printed here.
