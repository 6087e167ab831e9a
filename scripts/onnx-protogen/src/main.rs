fn main() {
    let args: Vec<String> = std::env::args().collect();
    let (proto, include, out) = (&args[1], &args[2], &args[3]);
    prost_build::Config::new()
        .out_dir(out)
        .compile_protos(&[proto], &[include])
        .expect("protoc");
}
