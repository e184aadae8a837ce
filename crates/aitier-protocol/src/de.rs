//! Lenient readers for fields that servers in the wild send in more than one
//! shape. They matter when aitier reads an upstream's bodies; aitier itself
//! always writes the strict OpenAI shape.
use serde::{Deserialize, Deserializer};

/// `null` (or absent, with `#[serde(default)]`) reads as the default.
pub fn null_default<'de, D, T>(d: D) -> Result<T, D::Error>
where
    D: Deserializer<'de>,
    T: Default + Deserialize<'de>,
{
    Option::<T>::deserialize(d).map(Option::unwrap_or_default)
}

/// A string, or `None` for anything else: llama.cpp's server sends its
/// error `code` as the HTTP status number, OpenAI as a string like
/// `context_length_exceeded`.
pub fn string_or_none<'de, D>(d: D) -> Result<Option<String>, D::Error>
where
    D: Deserializer<'de>,
{
    Ok(match serde_json::Value::deserialize(d)? {
        serde_json::Value::String(s) => Some(s),
        _ => None,
    })
}
