pub mod domain;
pub mod resource;
