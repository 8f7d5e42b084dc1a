# Build the Siteline installer for Windows in one command, from a checkout:
#
#   powershell -ExecutionPolicy Bypass -File installers\windows\build.ps1
#
# Steps: a build venv (.venv-win) with Siteline, its pinned dependencies and PyInstaller; the OpenWrt plugin
# when plugins\siteline-openwrt is there; the icons (installers\icons\make_icons.py); the one-folder bundle
# (installers\pyinstaller\siteline.spec -> dist\siteline); a smoke test of that bundle; then Inno Setup 6
# (iscc) -> dist\siteline-VERSION-windows-x64-setup.exe.
#
# Parameters: -Python (the interpreter that makes the venv, default "python"; 3.11 x64), -Venv (default
# .venv-win), -SkipBundle (reuse dist\siteline), -Iscc (path to ISCC.exe when it is not found by itself).
[CmdletBinding()]
param(
    [string]$Python = "python",
    [string]$Venv = ".venv-win",
    [switch]$SkipBundle,
    [string]$Iscc = ""
)

$ErrorActionPreference = "Stop"
Set-StrictMode -Version Latest

$Repo = (Resolve-Path (Join-Path $PSScriptRoot "..\..")).Path
Set-Location $Repo

function Say([string]$Text) { Write-Host "==> $Text" -ForegroundColor Cyan }

# Native programs do not throw on failure: check each one's exit code.
function Invoke-Native([string]$What, [scriptblock]$Command) {
    & $Command
    if ($LASTEXITCODE -ne 0) { throw "$What failed (exit code $LASTEXITCODE)" }
}

function Find-Iscc {
    if ($Iscc) {
        if (Test-Path $Iscc) { return $Iscc }
        throw "ISCC.exe not found at $Iscc"
    }
    $onPath = Get-Command "iscc.exe" -ErrorAction SilentlyContinue
    if ($onPath) { return $onPath.Source }
    $candidates = @(
        (Join-Path ${env:ProgramFiles(x86)} "Inno Setup 6\ISCC.exe"),
        (Join-Path $env:ProgramFiles "Inno Setup 6\ISCC.exe"),
        (Join-Path $env:LOCALAPPDATA "Programs\Inno Setup 6\ISCC.exe")
    )
    foreach ($candidate in $candidates) {
        if (Test-Path $candidate) { return $candidate }
    }
    throw "Inno Setup 6 (ISCC.exe) was not found. Install it (choco install innosetup, or winget install " +
        "JRSoftware.InnoSetup) or pass -Iscc C:\path\to\ISCC.exe."
}

$Py = Join-Path $Repo "$Venv\Scripts\python.exe"
$Dist = Join-Path $Repo "dist"
$Bundle = Join-Path $Dist "siteline"

# --- 1. the build venv ---------------------------------------------------------------------------------------
if (-not (Test-Path $Py)) {
    Say "creating $Venv with $Python"
    Invoke-Native "creating the venv" { & $Python -m venv $Venv }
}
Invoke-Native "checking Python" {
    & $Py -c "import struct, sys; sys.exit(0 if sys.version_info >= (3, 11) and struct.calcsize('P') == 8 else 1)"
}
if (-not $SkipBundle) {
    Say "installing Siteline and PyInstaller (pinned by constraints.txt)"
    Invoke-Native "pip upgrade" { & $Py -m pip install --quiet --upgrade pip }
    Invoke-Native "pip install" { & $Py -m pip install --quiet -c constraints.txt ".[bundle]" }
    $OpenWrt = Join-Path $Repo "plugins\siteline-openwrt"
    if (Test-Path (Join-Path $OpenWrt "pyproject.toml")) {
        Say "installing the OpenWrt plugin"
        Invoke-Native "pip install the OpenWrt plugin" { & $Py -m pip install --quiet -c constraints.txt $OpenWrt }
    }
}
$Version = (& $Py -c "import siteline; print(siteline.__version__)").Trim()
if ($LASTEXITCODE -ne 0 -or -not $Version) { throw "cannot read Siteline's version" }
# The .exe's file version must be numbers only (1.2.3.4): 0.4.0.dev2 gives 0.4.0.
$Numeric = [regex]::Match($Version, '^\d+(\.\d+){0,3}').Value
Say "Siteline $Version"

# --- 2. icons and the one-folder bundle ----------------------------------------------------------------------
if (-not $SkipBundle) {
    Say "icons: installers\icons\siteline.ico"
    Invoke-Native "make_icons.py" { & $Py installers\icons\make_icons.py }
    Say "PyInstaller: dist\siteline"
    if (Test-Path $Bundle) { Remove-Item -Recurse -Force $Bundle }
    Invoke-Native "PyInstaller" {
        & $Py -m PyInstaller --noconfirm --clean --log-level WARN --distpath $Dist `
            --workpath (Join-Path $Repo "build\pyinstaller") installers\pyinstaller\siteline.spec
    }
}
foreach ($exe in @("siteline.exe", "siteline-gui.exe")) {
    if (-not (Test-Path (Join-Path $Bundle $exe))) { throw "$Bundle\$exe is missing: did PyInstaller fail?" }
}

# --- 3. smoke test: the bundle starts and knows its version --------------------------------------------------
Say "smoke test: dist\siteline\siteline.exe --version"
$env:QT_QPA_PLATFORM = "offscreen"
# Windows PowerShell 5.1 turns a native program's redirected stderr into errors: let it through here.
$ErrorActionPreference = "Continue"
$said = (& (Join-Path $Bundle "siteline.exe") --version 2>&1 | Out-String).Trim()
$ErrorActionPreference = "Stop"
if ($LASTEXITCODE -ne 0) { throw "siteline.exe --version failed (exit code $LASTEXITCODE): $said" }
if ($said -notmatch [regex]::Escape($Version)) { throw "siteline.exe --version said '$said', expected $Version" }
Write-Host "    $said"

# --- 4. the installer ----------------------------------------------------------------------------------------
$IsccExe = Find-Iscc
Say "Inno Setup: $IsccExe"
$IsccArgs = @("/Qp", "/DAppVersion=$Version", "/DDistDir=$Bundle", "/O$Dist")
if ($Numeric) { $IsccArgs += "/DNumericVersion=$Numeric" }  # else the .exe keeps Inno Setup's default file version
Invoke-Native "ISCC" { & $IsccExe @IsccArgs installers\windows\siteline.iss }
$Setup = Join-Path $Dist "siteline-$Version-windows-x64-setup.exe"
if (-not (Test-Path $Setup)) { throw "ISCC did not write $Setup" }
$BundleMB = [math]::Round(((Get-ChildItem -Recurse -File $Bundle | Measure-Object -Sum Length).Sum) / 1MB, 1)
$SetupMB = [math]::Round((Get-Item $Setup).Length / 1MB, 1)
Say "done: $Setup ($SetupMB MB; the installed bundle is $BundleMB MB)"
