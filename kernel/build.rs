//! Links the kernel image with `kernel.ld` and generates the wiring tables
//! (`$OUT_DIR/starina_wiring.rs`) from `specs/`.

fn main() {
    let manifest_dir =
        std::env::var("CARGO_MANIFEST_DIR").expect("CARGO_MANIFEST_DIR is set by cargo");
    println!("cargo::rustc-link-arg-bins=-T{manifest_dir}/kernel.ld");
    for arg in ["-nostartfiles", "-nostdlib", "-static", "-no-pie"] {
        println!("cargo::rustc-link-arg-bins={arg}");
    }
    println!("cargo::rerun-if-changed={manifest_dir}/kernel.ld");
    starina_spec::build::kernel();
}
