//! cuttle-api
