//! cuttle-service
