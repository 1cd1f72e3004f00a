// The web UI's build: `npm run build` (make install runs it) writes dist/, which raypipe
// serve's HTTP port serves from `/` (docs/ui.md). In development, `npx vite` serves the UI
// with hot reload and forwards the Connect calls to a running server (RAYPIPE_HTTP_ADDRESS,
// default http://127.0.0.1:8280).
import react from "@vitejs/plugin-react";
import { defineConfig } from "vite";

// Node runs this file; its `process` is declared here so the browser code needs no Node types.
declare const process: { env: Record<string, string | undefined> };
const server = process.env.RAYPIPE_HTTP_ADDRESS ?? "http://127.0.0.1:8280";

export default defineConfig({
  plugins: [react()],
  resolve: {
    // @raypipe/client is linked from ../typescript: one copy of the protobuf and Connect
    // runtimes for both, so messages and errors are recognised across the two.
    dedupe: ["@bufbuild/protobuf", "@connectrpc/connect", "@connectrpc/connect-web"],
  },
  build: {
    outDir: "dist",
    emptyOutDir: true,
    sourcemap: false,
    chunkSizeWarningLimit: 1024,
  },
  server: {
    proxy: {
      "^/(raypipe\\.v1|grpc\\.health\\.v1)\\.": { target: server, changeOrigin: true },
    },
  },
});
