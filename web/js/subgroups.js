// Subgroup operations for the GPU kernels in the browser. wgpu's WebGPU backend (wgpu 30) neither
// reports nor requests the `subgroups` feature, so a device it creates never has it and the
// kernels run their portable path. While the engine creates its device, this asks for `subgroups`
// too whenever the adapter offers it; the Rust side then reads the device's features and picks the
// subgroup kernels (kernels/src/context.rs). Outside that call the page's own requests are untouched.

/** Runs `create()` with adapters' requestDevice also asking for `subgroups` where offered. */
export async function withSubgroups(create) {
  const proto = globalThis.GPUAdapter?.prototype;
  if (!proto?.requestDevice) return create();
  const requestDevice = proto.requestDevice;
  proto.requestDevice = function (descriptor = {}) {
    const wanted = [...(descriptor.requiredFeatures ?? [])];
    if (this.features?.has("subgroups") && !wanted.includes("subgroups")) wanted.push("subgroups");
    return requestDevice.call(this, { ...descriptor, requiredFeatures: wanted });
  };
  try {
    return await create();
  } finally {
    // Restore unless something else replaced the method meanwhile.
    if (proto.requestDevice !== requestDevice) proto.requestDevice = requestDevice;
  }
}
