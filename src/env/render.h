// src/env/render.h: offscreen frames of an Env with MuJoCo's renderer, headless (no display).
//
// Run book
//   OpenGL     one platform per process, chosen at the first Renderer and kept (MuJoCo binds its
//              GL function loader once per process). EGL first: libEGL.so.1 is opened at run
//              time (not linked: pompc starts on machines without it, and a linked libEGL would
//              capture MuJoCo's loader even when OSMesa is the one in use), then the displays in
//              turn: each EGL device (EGL_EXT_platform_device: a GPU where there is one, Mesa's
//              software device otherwise), Mesa's surfaceless platform
//              (EGL_MESA_platform_surfaceless), the default display; a compatibility-profile
//              OpenGL context without a surface (EGL_KHR_surfaceless_context). Then OSMesa
//              (libOSMesa.so.8) when EGL gives nothing. MUJOCO_GL=egl or MUJOCO_GL=osmesa allows
//              only that one (dm_control's variable). With neither, the error names the Debian
//              packages: libegl1 libegl-mesa0 libgl1-mesa-dri (`make deps` installs them).
//              The display stays initialised until the process exits (eglTerminate would unload
//              Mesa's driver and leave its allocations to LeakSanitizer as leaks); OSMesa's own
//              per-context leak is suppressed in tests/lsan.supp (make test).
//   frames     Renderer(env, W, H, camera): MuJoCo's offscreen framebuffer (the model's
//              visual.global.offwidth / offheight raised to W x H in a shallow copy of mjModel),
//              mjv_updateScene with the default mjvOption and every category, mjr_render,
//              mjr_readPixels; rows returned top to bottom. The state is copied into the
//              renderer's own mjData first, so rendering never changes the Env (an evaluation
//              returns the same with and without video). As dm_control's Physics.render: default
//              scene flags (shadows, reflections, skybox), font scale 150.
//   camera     -1 = the task's default, TD-MPC2's DMC render: camera 0 (the model's first
//              camera, e.g. cartpole's "fixed", walker's "side"), quadruped camera 2; a model
//              without cameras gets MuJoCo's free camera.
//   cost       on llvmpipe (Mesa's software rasteriser, 2 cores): ~35 ms per 384 x 384 frame of
//              cartpole on a quiet machine; about half of it does not shrink with the frame
//              (48 x 48 costs half as much: mostly the 2048 x 2048 shadow map). The tests print
//              their own timing.
//   tests      build/test_emu -ts=video
#pragma once

#include <cstdint>
#include <memory>
#include <string>

#include "env/env.h"

namespace pompc::env {

// TD-MPC2's camera for DMC videos: 0, and 2 for quadruped.
int default_camera(const TaskSpec& spec);

class Renderer {
 public:
  // Makes the GL context and MuJoCo's render context for env's model (the Env must outlive the
  // Renderer). Throws pompc::Error when no headless OpenGL is available (naming the packages),
  // for a size outside 1..8192 or a camera the model does not have.
  Renderer(const Env& env, int width, int height, int camera = -1);
  ~Renderer();
  Renderer(const Renderer&) = delete;
  Renderer& operator=(const Renderer&) = delete;

  // The env's current state: width * height * 3 bytes of RGB, rows top to bottom.
  void render(const Env& env, uint8_t* rgb);

  int width() const;
  int height() const;
  int camera() const;  // the fixed camera used, -1 for the free camera
  // The OpenGL platform and renderer, e.g. "EGL device 0 of 1, llvmpipe (LLVM 15.0.6, 256 bits),
  // OpenGL 4.5 (Compatibility Profile) Mesa 22.3.6".
  static std::string platform();

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

}  // namespace pompc::env
