//! placeholder: filled in by the codec issue
