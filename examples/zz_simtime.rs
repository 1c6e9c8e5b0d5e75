// TEMPORARY timing harness (to be removed).
use ringsync::core::Schedule;
use ringsync::sim::cli::{run, Format, SimOptions};
fn main() {
    let a: Vec<String> = std::env::args().collect();
    let nodes: u32 = a[1].parse().unwrap();
    let schedule = match a[2].as_str() {
        "all" => None,
        s => Some(s.parse::<Schedule>().unwrap()),
    };
    let runs: u32 = a.get(3).map_or(1, |s| s.parse().unwrap());
    let crash: u32 = a.get(4).map_or(0, |s| s.parse().unwrap());
    let loss: f64 = a.get(5).map_or(0.0, |s| s.parse().unwrap());
    let t = std::time::Instant::now();
    let out = run(&SimOptions {
        nodes,
        schedule,
        seed: 1,
        runs,
        writes: 100,
        writers: 8,
        loss,
        crash,
        format: Format::Table,
    })
    .unwrap();
    print!("{out}");
    eprintln!("wall {:?}", t.elapsed());
}
