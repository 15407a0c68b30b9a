//! Artifacts at an http(s) URL: resumable, verified downloads into the disk
//! cache. Built with the `download` feature (on by default), natively only: a
//! browser fetches the files in JavaScript and hands them to
//! [`Artifact::from_files`](crate::Artifact::from_files). Without it,
//! `no_download.rs` stands in and opening a URL is an error.

mod cache;
mod disk;
mod http;
mod remote;
mod reports;

pub(crate) use remote::Remote;
pub use remote::cache_folder;
