//! Config file format and validation.
