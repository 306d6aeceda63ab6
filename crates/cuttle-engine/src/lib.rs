//! cuttle-engine
