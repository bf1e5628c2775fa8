//! Scan: drives sources → identify → classify → store.
