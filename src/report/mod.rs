//! report stage (see the module list in lib.rs).
