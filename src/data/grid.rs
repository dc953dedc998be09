//! PNG grids of images (placeholder until the data layer lands: see issue 2).
