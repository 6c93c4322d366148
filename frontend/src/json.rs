//! Reading JSON in the browser: the browser's own `JSON.parse`, then serde over the parsed value. The
//! wasm then carries no JSON parser of its own (serde_json's is the largest piece it would hold); writing
//! JSON still goes through serde_json, whose writer is small.

use serde::de::DeserializeOwned;
use wasm_bindgen::JsCast;

/// Why a text could not be read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ReadError {
    /// The text is not JSON (the browser's message).
    Syntax(String),
    /// JSON, but not the shape expected (serde's message).
    Shape(String),
}

/// Parses `text` as JSON into a `T`.
pub fn from_str<T: DeserializeOwned>(text: &str) -> Result<T, ReadError> {
    let value = js_sys::JSON::parse(text).map_err(|e| {
        ReadError::Syntax(
            e.dyn_ref::<js_sys::Error>()
                .map_or_else(String::new, |e| String::from(e.message())),
        )
    })?;
    serde_wasm_bindgen::from_value(value).map_err(|e| ReadError::Shape(e.to_string()))
}
