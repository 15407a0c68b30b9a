//! `mlc-wgpu devices`: the GPU adapters wgpu finds, with what the kernels may use on each
//! (shader-f16, subgroups, timestamps), the limits that size a model's buffers, and the
//! cooperative-matrix configurations the adapter offers (the tensor-core shapes a
//! prefill product could use; docs/kernels.md).

use anyhow::Result;
use clap::Args;
use serde_json::{Value, json};

/// Arguments of `devices`.
#[derive(Args)]
pub struct DevicesArgs {
    /// Print one JSON object per adapter instead of text.
    #[arg(long)]
    json: bool,
}

/// Lists every adapter of the backends `WGPU_BACKEND` allows (all of them when unset).
pub fn run(args: &DevicesArgs) -> Result<()> {
    let instance =
        wgpu::Instance::new(wgpu::InstanceDescriptor::new_without_display_handle_from_env());
    let backends = wgpu::Backends::from_env().unwrap_or(wgpu::Backends::all());
    let adapters = pollster::block_on(instance.enumerate_adapters(backends));
    if adapters.is_empty() {
        anyhow::bail!(
            "wgpu found no GPU adapter (backends {backends:?}); the CPU engine still works \
             (--device cpu). On Linux a Vulkan driver is needed: Mesa's lavapipe is the \
             package mesa-vulkan-drivers"
        );
    }
    for adapter in &adapters {
        let report = describe(adapter);
        if args.json {
            println!("{report}");
        } else {
            print_text(&report);
        }
    }
    Ok(())
}

/// What one adapter offers, as the JSON `--json` prints.
fn describe(adapter: &wgpu::Adapter) -> Value {
    let info = adapter.get_info();
    let features = adapter.features();
    let limits = adapter.limits();
    let has = |feature| features.contains(feature);
    let cooperative_matrices: Vec<Value> = adapter
        .cooperative_matrix_properties()
        .iter()
        .map(|p| {
            json!({
                "m": p.m_size, "n": p.n_size, "k": p.k_size,
                "ab": format!("{:?}", p.ab_type).to_lowercase(),
                "cr": format!("{:?}", p.cr_type).to_lowercase(),
                "saturating": p.saturating_accumulation,
            })
        })
        .collect();
    json!({
        "name": info.name,
        "backend": format!("{:?}", info.backend).to_lowercase(),
        "device_type": format!("{:?}", info.device_type),
        "driver": format!("{} {}", info.driver, info.driver_info).trim(),
        "software": info.device_type == wgpu::DeviceType::Cpu,
        "shader_f16": has(wgpu::Features::SHADER_F16),
        "subgroups": has(wgpu::Features::SUBGROUP),
        "subgroup_size": [info.subgroup_min_size, info.subgroup_max_size],
        "timestamp_query": has(wgpu::Features::TIMESTAMP_QUERY),
        "timestamp_query_inside_passes": has(wgpu::Features::TIMESTAMP_QUERY_INSIDE_PASSES),
        "cooperative_matrix_feature": has(wgpu::Features::EXPERIMENTAL_COOPERATIVE_MATRIX),
        "cooperative_matrices": cooperative_matrices,
        "max_buffer_size": limits.max_buffer_size,
        "max_storage_buffer_binding_size": limits.max_storage_buffer_binding_size,
        "max_compute_workgroup_storage_size": limits.max_compute_workgroup_storage_size,
        "max_compute_invocations_per_workgroup": limits.max_compute_invocations_per_workgroup,
    })
}

fn print_text(report: &Value) {
    let software =
        if report["software"] == true { " (software: slower than the CPU engine)" } else { "" };
    println!(
        "{} — {}, {}{software}",
        report["name"].as_str().unwrap_or("?"),
        report["backend"].as_str().unwrap_or("?"),
        report["device_type"].as_str().unwrap_or("?")
    );
    println!("  driver: {}", report["driver"].as_str().unwrap_or(""));
    let yes = |key: &str| if report[key] == true { "yes" } else { "no" };
    println!(
        "  shader-f16: {}, subgroups: {} (size {}–{}), timestamps: {} (inside passes: {})",
        yes("shader_f16"),
        yes("subgroups"),
        report["subgroup_size"][0],
        report["subgroup_size"][1],
        yes("timestamp_query"),
        yes("timestamp_query_inside_passes"),
    );
    println!(
        "  limits: buffer {} MiB, storage binding {} MiB, workgroup storage {} KiB, {} invocations",
        report["max_buffer_size"].as_u64().unwrap_or(0) >> 20,
        report["max_storage_buffer_binding_size"].as_u64().unwrap_or(0) >> 20,
        report["max_compute_workgroup_storage_size"].as_u64().unwrap_or(0) >> 10,
        report["max_compute_invocations_per_workgroup"],
    );
    let configs = report["cooperative_matrices"].as_array().map(Vec::as_slice).unwrap_or_default();
    if configs.is_empty() {
        println!("  cooperative matrices: none");
    } else {
        let shapes: Vec<String> = configs
            .iter()
            .map(|c| {
                format!(
                    "{}x{}x{} {}->{}",
                    c["m"],
                    c["n"],
                    c["k"],
                    c["ab"].as_str().unwrap_or("?"),
                    c["cr"].as_str().unwrap_or("?")
                )
            })
            .collect();
        println!("  cooperative matrices: {}", shapes.join(", "));
    }
}
