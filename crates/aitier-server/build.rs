//! The console's pages are embedded from `console/dist`: a rebuilt bundle
//! (new file names included) must rebuild the server.
fn main() {
    println!("cargo:rerun-if-changed=console/dist");
}
