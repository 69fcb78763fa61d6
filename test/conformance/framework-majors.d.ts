// The previous framework majors run the same suites; they are installed under npm aliases (root
// devDependencies: `express4` is express@4, `koa2` is koa@2). Only the current majors' type
// packages are installed, so the aliases borrow them: everything the test apps call (`express()`,
// `express.json()`, `app.get/use/listen`, `new Koa()`, `app.use/listen`) has the same signature in
// both majors.
declare module 'express4' {
  import express from 'express'
  export default express
}

declare module 'koa2' {
  import Koa from 'koa'
  export default Koa
}
