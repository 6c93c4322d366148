//! Reading JSON in the browser: the browser's own `JSON.parse`, then serde over the parsed value. The
//! wasm then carries no JSON parser of its own (serde_json's is the largest piece it would hold); writing
//! JSON still goes through serde_json, whose writer is small.
//!
//! The serde deserializer over the parsed value is this module's own, not serde-wasm-bindgen's, for the
//! page's weight: its errors are fixed sentences. An error that describes the value it met (serde's
//! `invalid type: floating point 1.5, expected ...`) brings float formatting into the wasm, about a
//! tenth of the page's code. What was wrong is still said, without the value.

use js_sys::{Array, Object, Reflect};
use serde::de::{self, DeserializeOwned, DeserializeSeed, IntoDeserializer, Visitor};
use std::fmt;
use wasm_bindgen::{JsCast, JsValue};

/// Why a text could not be read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ReadError {
    /// The text is not JSON (the browser's message).
    Syntax(String),
    /// JSON, but not the shape expected.
    Shape(&'static str),
}

impl fmt::Display for ReadError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Syntax(why) => f.write_str(why),
            Self::Shape(why) => f.write_str(why),
        }
    }
}

/// Parses `text` as JSON into a `T`.
pub fn from_str<T: DeserializeOwned>(text: &str) -> Result<T, ReadError> {
    let value = js_sys::JSON::parse(text).map_err(|e| {
        ReadError::Syntax(
            e.dyn_ref::<js_sys::Error>()
                .map_or_else(String::new, |e| String::from(e.message())),
        )
    })?;
    T::deserialize(Value(value)).map_err(|e| ReadError::Shape(e.0))
}

/// A value that is not what the type asked for.
#[derive(Debug)]
struct Error(&'static str);

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.0)
    }
}

impl std::error::Error for Error {}

/// Every method ignores the description serde hands it (see the module docs).
impl de::Error for Error {
    fn custom<T: fmt::Display>(_: T) -> Self {
        Self("a value is not valid")
    }
    fn invalid_type(_: de::Unexpected<'_>, _: &dyn de::Expected) -> Self {
        Self("a value has the wrong type")
    }
    fn invalid_value(_: de::Unexpected<'_>, _: &dyn de::Expected) -> Self {
        Self("a value is not valid")
    }
    fn invalid_length(_: usize, _: &dyn de::Expected) -> Self {
        Self("a list has the wrong length")
    }
    fn unknown_variant(_: &str, _: &'static [&'static str]) -> Self {
        Self("a name is not known")
    }
    fn unknown_field(_: &str, _: &'static [&'static str]) -> Self {
        Self("a field is not known")
    }
    fn missing_field(_: &'static str) -> Self {
        Self("a field is missing")
    }
    fn duplicate_field(_: &'static str) -> Self {
        Self("a field is repeated")
    }
}

/// The largest integer a JavaScript number holds exactly (2^53 - 1).
const MAX_SAFE: f64 = 9_007_199_254_740_991.0;

/// A value from `JSON.parse`: null, a boolean, a number, a string, an array or a plain object.
struct Value(JsValue);

/// What a [`Value`] holds, found out once by [`Value::read`] (not generic, so its code is in the wasm once
/// rather than once per type read).
enum Read {
    Unit,
    Bool(bool),
    U64(u64),
    I64(i64),
    F64(f64),
    Str(String),
    Seq(Items),
    Map(Fields),
}

impl Value {
    fn is_none(&self) -> bool {
        self.0.is_null() || self.0.is_undefined()
    }

    fn read(self) -> Read {
        let v = self.0;
        if v.is_null() || v.is_undefined() {
            Read::Unit
        } else if let Some(b) = v.as_bool() {
            Read::Bool(b)
        } else if let Some(n) = v.as_f64() {
            // JSON has one kind of number: a whole one is read as an integer.
            match n {
                _ if n.fract() != 0.0 || n.abs() > MAX_SAFE => Read::F64(n),
                _ if n >= 0.0 => Read::U64(n as u64),
                _ => Read::I64(n as i64),
            }
        } else if let Some(s) = v.as_string() {
            Read::Str(s)
        } else if Array::is_array(&v) {
            Read::Seq(Items {
                items: v.unchecked_into(),
                at: 0,
            })
        } else {
            let keys = Object::keys(v.unchecked_ref::<Object>());
            Read::Map(Fields {
                object: v,
                keys,
                at: 0,
            })
        }
    }
}

impl<'de> de::Deserializer<'de> for Value {
    type Error = Error;

    fn deserialize_any<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Error> {
        match self.read() {
            Read::Unit => visitor.visit_unit(),
            Read::Bool(b) => visitor.visit_bool(b),
            Read::U64(n) => visitor.visit_u64(n),
            Read::I64(n) => visitor.visit_i64(n),
            Read::F64(n) => visitor.visit_f64(n),
            Read::Str(s) => visitor.visit_string(s),
            Read::Seq(items) => visitor.visit_seq(items),
            Read::Map(fields) => visitor.visit_map(fields),
        }
    }

    fn deserialize_option<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Error> {
        if self.is_none() {
            visitor.visit_none()
        } else {
            visitor.visit_some(self)
        }
    }

    fn deserialize_newtype_struct<V: Visitor<'de>>(
        self,
        _: &'static str,
        visitor: V,
    ) -> Result<V::Value, Error> {
        visitor.visit_newtype_struct(self)
    }

    /// Only enums of names (`"rate_limited"`): the protocol has no others.
    fn deserialize_enum<V: Visitor<'de>>(
        self,
        _: &'static str,
        _: &'static [&'static str],
        visitor: V,
    ) -> Result<V::Value, Error> {
        match self.0.as_string() {
            Some(name) => visitor.visit_enum(name.into_deserializer()),
            None => Err(Error("a name is expected")),
        }
    }

    fn deserialize_ignored_any<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Error> {
        visitor.visit_unit()
    }

    serde::forward_to_deserialize_any! {
        bool i8 i16 i32 i64 i128 u8 u16 u32 u64 u128 f32 f64 char str string bytes byte_buf unit
        unit_struct seq tuple tuple_struct map struct identifier
    }
}

/// The items of an array, in order.
struct Items {
    items: Array,
    at: u32,
}

impl<'de> de::SeqAccess<'de> for Items {
    type Error = Error;

    fn next_element_seed<T: DeserializeSeed<'de>>(
        &mut self,
        seed: T,
    ) -> Result<Option<T::Value>, Error> {
        if self.at >= self.items.length() {
            return Ok(None);
        }
        let item = self.items.get(self.at);
        self.at += 1;
        seed.deserialize(Value(item)).map(Some)
    }

    fn size_hint(&self) -> Option<usize> {
        Some((self.items.length() - self.at) as usize)
    }
}

/// The fields of an object, in the order `Object.keys` gives them.
struct Fields {
    object: JsValue,
    keys: Array,
    at: u32,
}

impl<'de> de::MapAccess<'de> for Fields {
    type Error = Error;

    fn next_key_seed<K: DeserializeSeed<'de>>(
        &mut self,
        seed: K,
    ) -> Result<Option<K::Value>, Error> {
        if self.at >= self.keys.length() {
            return Ok(None);
        }
        seed.deserialize(Value(self.keys.get(self.at))).map(Some)
    }

    fn next_value_seed<V: DeserializeSeed<'de>>(&mut self, seed: V) -> Result<V::Value, Error> {
        let key = self.keys.get(self.at);
        self.at += 1;
        let value = Reflect::get(&self.object, &key).unwrap_or(JsValue::UNDEFINED);
        seed.deserialize(Value(value))
    }
}
